// Files in the composer and in sent messages. A file is uploaded the moment it is
// picked, dropped on the composer or the conversation, or pasted into the message box;
// its chip shows it uploading, ready (it goes with the next message) or refused (the
// server's one-sentence reason). Thumbnails of sent images are fetched with the user's
// token into blob: URLs: the file route never takes a credential in its URL.

import { h } from "./view.js";

export class Attachments {
  /** `getApi()` is the signed-in Api; chips render into the `list` element. */
  constructor(getApi, list) {
    this.getApi = getApi;
    this.list = list;
    this.items = []; // {name, status: uploading | ready | error, preview, file, error, settled}
  }

  /** How many files will go with the next message (refused ones do not count). */
  get count() {
    return this.items.filter((item) => item.status !== "error").length;
  }

  add(files) {
    for (const file of files) {
      const item = {
        name: file.name || "pasted file",
        status: "uploading",
        preview: file.type.startsWith("image/") ? URL.createObjectURL(file) : null,
      };
      item.settled = this.getApi()
        .uploadFile(file, item.name)
        .then(
          (uploaded) => Object.assign(item, { status: "ready", file: uploaded }),
          (err) => Object.assign(item, { status: "error", error: err.message }),
        )
        .finally(() => this.render());
      this.items.push(item);
    }
    this.render();
  }

  /** The ids of the uploaded files, once every upload has settled. */
  async ready() {
    await Promise.all(this.items.map((item) => item.settled));
    return this.items.filter((item) => item.status === "ready").map((item) => item.file.id);
  }

  remove(item) {
    if (item.preview) URL.revokeObjectURL(item.preview);
    this.items = this.items.filter((other) => other !== item);
    this.render();
  }

  clear() {
    for (const item of [...this.items]) this.remove(item);
  }

  render() {
    this.list.hidden = !this.items.length;
    this.list.replaceChildren(
      ...this.items.map((item) => {
        const what = item.file ? `${item.name} (${item.file.media_type})` : item.name;
        const state = { uploading: "uploading…", ready: "", error: item.error }[item.status];
        return h(
          "li",
          { class: `file-chip attachment attachment-${item.status}`, title: what },
          item.preview
            ? h("img", { class: "thumb", alt: "", src: item.preview })
            : h("span", { class: "file-icon", "aria-hidden": "true", text: "📎" }),
          h("span", { class: "file-name", text: item.name }),
          state ? h("span", { class: "attachment-state", role: "status", text: state }) : null,
          h("button", {
            type: "button",
            class: "link-button remove-attachment",
            text: "×",
            "aria-label": `Remove ${item.name}`,
            onclick: () => this.remove(item),
          }),
        );
      }),
    );
  }
}

/** The ways a file gets in: the attach button's picker, drop on `dropZones`, paste. */
export function wireAttachments(attachments, { button, picker, input, dropZones }) {
  button.addEventListener("click", () => picker.click());
  picker.addEventListener("change", () => {
    attachments.add([...picker.files]);
    picker.value = "";
  });
  const carriesFiles = (event) => event.dataTransfer && event.dataTransfer.types.includes("Files");
  for (const zone of dropZones) {
    zone.addEventListener("dragover", (event) => {
      if (!carriesFiles(event)) return;
      event.preventDefault();
      zone.classList.add("dropping");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("dropping"));
    zone.addEventListener("drop", (event) => {
      zone.classList.remove("dropping");
      if (!carriesFiles(event)) return;
      event.preventDefault();
      attachments.add([...event.dataTransfer.files]);
    });
  }
  input.addEventListener("paste", (event) => {
    const files = event.clipboardData ? [...event.clipboardData.files] : [];
    if (!files.length) return; // plain text pastes as text
    event.preventDefault();
    attachments.add(files);
  });
}

/** Fill in the thumbnails of sent images under `container` as messages render. */
export function watchThumbnails(container, getApi) {
  const urls = new Map(); // file id → Promise of a blob: URL (null when unreadable)
  const fill = () => {
    for (const img of container.querySelectorAll("img.thumb[data-file-id]:not([src])")) {
      const id = img.dataset.fileId;
      if (!urls.has(id)) {
        urls.set(
          id,
          getApi()
            .fileBlob(id)
            .then((blob) => URL.createObjectURL(blob), () => null),
        );
      }
      urls.get(id).then((url) => {
        if (url) img.src = url;
        else img.replaceWith(h("span", { class: "file-icon", "aria-hidden": "true", text: "📎" }));
      });
    }
  };
  new MutationObserver(fill).observe(container, { childList: true, subtree: true });
}
