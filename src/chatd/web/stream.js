// A chat's live stream over EventSource. The browser reconnects by itself after a
// network drop and sends Last-Event-ID (spec §5.4); when it gives up (the server
// answered with an error status) we open a new EventSource from the last applied seq.
// Either way the ChatState ignores seqs it has applied, so nothing shows twice.

export const EVENT_TYPES = [
  "status",
  "message",
  "message_part",
  "queue_update",
  "retry",
  "error",
  "action_required",
  "preview_reset",
  "history_reset",
  "title",
  "chat_deleted",
];

const MAX_BACKOFF_MS = 30000;

export class ChatStream {
  /**
   * @param {(after: number) => string} urlFor  the stream URL resuming after a seq
   * @param {() => number} lastSeq  the last seq the state applied
   * @param {(type: string, data: object) => void} onEvent
   * @param {(state: "open" | "reconnecting" | "closed") => void} onConnection
   */
  constructor(urlFor, lastSeq, onEvent, onConnection) {
    this.urlFor = urlFor;
    this.lastSeq = lastSeq;
    this.onEvent = onEvent;
    this.onConnection = onConnection;
    this.source = null;
    this.timer = null;
    this.failures = 0;
    this.closed = false;
  }

  open() {
    if (this.closed) return;
    const source = new EventSource(this.urlFor(this.lastSeq()));
    this.source = source;
    source.addEventListener("open", () => {
      this.failures = 0;
      this.onConnection("open");
    });
    for (const type of EVENT_TYPES) {
      source.addEventListener(type, (event) => {
        // "error" is also EventSource's own connection-error event, which has no data.
        if (!(event instanceof MessageEvent) || typeof event.data !== "string") {
          if (type === "error") this.connectionError(source);
          return;
        }
        let data;
        try {
          data = JSON.parse(event.data);
        } catch {
          return;
        }
        this.onEvent(type, data);
        if (type === "chat_deleted") this.close();
      });
    }
  }

  connectionError(source) {
    if (this.closed || source !== this.source) return;
    this.onConnection("reconnecting");
    if (source.readyState === EventSource.CLOSED) {
      // The browser gave up (an error status such as 503 while a replica drains).
      this.failures += 1;
      const delay = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** Math.min(this.failures, 5));
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.open(), delay);
    }
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.source) this.source.close();
    this.onConnection("closed");
  }
}
