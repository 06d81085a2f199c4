"""Service settings from the environment: defaults, conversion, cross-checks (spec §0.1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatd.config import ConfigError, load_settings


def test_defaults_match_the_spec() -> None:
    s = load_settings({})
    assert (s.acquire_interval, s.lease_ttl, s.heartbeat_interval) == (1.0, 30.0, 5.0)
    assert (s.max_concurrent_chats, s.max_queued_messages, s.max_steps) == (1000, 20, 1200)
    assert s.requires_action_timeout == 300.0
    assert (s.acquire_max_lag, s.acquire_max_busy) == (0.1, 0.8)
    assert load_settings({"CHATD_ACQUIRE_MAX_LAG": "0"}).acquire_max_lag == 0.0
    assert s.effective_database_url == "sqlite+aiosqlite:///.chatd/chatd.db"
    assert s.effective_workspace_root == Path(".chatd/workspaces")
    assert (s.host, s.port) == ("127.0.0.1", 8080)


def test_environment_and_overrides() -> None:
    s = load_settings(
        {
            "CHATD_DATA_DIR": "/tmp/x",
            "CHATD_LEASE_TTL": "3",
            "CHATD_HEARTBEAT_INTERVAL": "0.5",
            "CHATD_ACQUIRE_INTERVAL": "0.2",
            "CHATD_SYNC_INTERVAL": "0.5",
            "CHATD_DATABASE_URL": "postgresql+asyncpg://u@127.0.0.1/db",
        },
        port=9000,
        replica_id="r1",
    )
    assert s.data_dir == Path("/tmp/x") and s.lease_ttl == 3.0 and s.port == 9000
    assert s.effective_database_url.startswith("postgresql+asyncpg://")
    assert s.replica_id == "r1"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CHATD_LEASE_TTL": "abc"}, "CHATD_LEASE_TTL must be a positive number"),
        ({"CHATD_MAX_STEPS": "0"}, "CHATD_MAX_STEPS must be a positive number"),
        ({"CHATD_HEARTBEAT_INTERVAL": "20"}, "at most a third of CHATD_LEASE_TTL"),
        ({"CHATD_ACQUIRE_INTERVAL": "40"}, "CHATD_ACQUIRE_INTERVAL must be shorter"),
        ({"CHATD_SYNC_INTERVAL": "6"}, "CHATD_SYNC_INTERVAL must not exceed"),
        ({"CHATD_ACQUIRE_MAX_LAG": "-1"}, "CHATD_ACQUIRE_MAX_LAG must be a number, 0 to"),
        ({"CHATD_ACQUIRE_MAX_LAG": "soon"}, "CHATD_ACQUIRE_MAX_LAG must be a number, 0 to"),
        ({"CHATD_ACQUIRE_MAX_BUSY": "1.5"}, "CHATD_ACQUIRE_MAX_BUSY is a share of one core"),
    ],
)
def test_bad_settings_give_one_line_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(env)
    assert "\n" not in str(info.value)


def test_title_generation_can_be_switched_off() -> None:
    assert load_settings({}).generate_titles is True
    assert load_settings({"CHATD_GENERATE_TITLES": "false"}).generate_titles is False
    assert load_settings({"CHATD_GENERATE_TITLES": "on"}).generate_titles is True
    with pytest.raises(ConfigError, match="CHATD_GENERATE_TITLES must be true or false"):
        load_settings({"CHATD_GENERATE_TITLES": "maybe"})
