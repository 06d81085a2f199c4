// A chat's cost and tokens as the header shows them (GET /api/chats/{id}/cost).

const tokens = (n) => Number(n).toLocaleString("en-US");

/** "$0.004213" under a cent, "$1.2345" above; micro-USD in, dollars out. */
export function formatUsd(micros) {
  const dollars = micros / 1e6;
  return `$${dollars.toFixed(micros < 10_000 ? 6 : 4)}`;
}

/** The badge's text and its longer title; null before the chat's first step. */
export function costSummary(cost) {
  if (!cost || !cost.messages) return null;
  const counts = `${tokens(cost.input_tokens)} in · ${tokens(cost.output_tokens)} out tokens`;
  const priced = cost.messages > cost.unpriced_messages;
  const text = priced ? `${formatUsd(cost.cost_micros)} · ${counts}` : counts;
  const lines = [
    priced ? `Cost: ${formatUsd(cost.cost_micros)}` : "Cost: the model has no prices",
    `Input ${tokens(cost.input_tokens)}, output ${tokens(cost.output_tokens)}, ` +
      `cache read ${tokens(cost.cache_read_tokens)}, cache write ${tokens(cost.cache_creation_tokens)}`,
    ...cost.by_model.map((m) => `${m.model}: ${formatUsd(m.cost_micros)}`),
  ];
  if (priced && cost.unpriced_messages) lines.push(`${cost.unpriced_messages} replies unpriced`);
  return { text, title: lines.join("\n") };
}
