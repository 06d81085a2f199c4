"""Generated chat titles (service spec §4.10): what a model answers, made a title."""

from __future__ import annotations

import pytest

from chatd.providers.scripted import ScriptedModel
from chatd.titles import MAX_CHARS, TITLE_PROMPT, clean_title, generate_title


@pytest.mark.parametrize(
    ("answer", "title"),
    [
        ("Tides on other planets", "Tides on other planets"),
        ('"Tides on other planets."', "Tides on other planets"),
        ("Title: Tides on Mars\n\nHere is why...", "Tides on Mars"),
        ("**Tides on Mars**", "Tides on Mars"),
        (
            "one two three four five six seven eight nine ten",
            "one two three four five six seven eight",
        ),
        ("   \n  ", None),
        ('""', None),
    ],
)
def test_a_models_answer_becomes_a_short_plain_title(answer: str, title: str | None) -> None:
    assert clean_title(answer) == title


def test_a_title_of_long_words_stays_under_128_characters() -> None:
    title = clean_title(" ".join(["x" * 40] * 8))
    assert title is not None and len(title) <= MAX_CHARS and not title.endswith(" ")


async def test_the_model_is_asked_with_the_title_prompt_and_the_first_message() -> None:
    model = ScriptedModel()
    title = await generate_title(model, "how do tides work on other planets, really?")
    assert title == "How do tides work on other planets, really"
    [call] = model.calls
    assert call.prompt[0].content[0].text == TITLE_PROMPT  # type: ignore[union-attr]
    assert call.tools == []
