// Dropping a PNG made by AUTOMATIC1111 or by this app onto a prompt box fills the tab's fields from the
// generation parameters stored in the picture (its "parameters" text chunk), as in AUTOMATIC1111.
(() => {
  const decoder = (label) => new TextDecoder(label);

  function pngParameters(buffer) {
    const bytes = new Uint8Array(buffer);
    const view = new DataView(buffer);
    if (bytes.length < 8 || bytes[1] !== 0x50 || bytes[2] !== 0x4e || bytes[3] !== 0x47) return null;
    let offset = 8;
    while (offset + 8 <= bytes.length) {
      const length = view.getUint32(offset);
      const type = String.fromCharCode(...bytes.slice(offset + 4, offset + 8));
      const data = bytes.slice(offset + 8, offset + 8 + length);
      offset += 12 + length;
      if (type !== "tEXt" && type !== "iTXt") continue;
      const keywordEnd = data.indexOf(0);
      const keyword = decoder("latin1").decode(data.slice(0, keywordEnd));
      if (keyword !== "parameters") continue;
      if (type === "tEXt") return decoder("latin1").decode(data.slice(keywordEnd + 1));
      // iTXt: keyword\0 compression-flag compression-method language\0 translated-keyword\0 text (UTF-8)
      if (data[keywordEnd + 1] !== 0) return null;  // compressed iTXt: not written by A1111 or this app
      let position = keywordEnd + 3;
      position = data.indexOf(0, position) + 1;
      position = data.indexOf(0, position) + 1;
      return decoder("utf-8").decode(data.slice(position));
    }
    return null;
  }

  document.addEventListener("dragover", (event) => {
    if (event.target.closest && event.target.closest("[id$='_prompt'] textarea")) event.preventDefault();
  }, true);

  document.addEventListener("drop", async (event) => {
    const box = event.target.closest && event.target.closest("[id$='_prompt']");
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (!box || !file || !file.type.startsWith("image/")) return;
    event.preventDefault();
    event.stopPropagation();
    const text = pngParameters(await file.arrayBuffer());
    if (!text) return;
    const tab = box.id.replace(/_(neg_)?prompt$/, "");
    const textarea = document.querySelector(`#${tab}_prompt textarea`);
    textarea.value = text;
    textarea.dispatchEvent(new Event("input", { bubbles: true }));
    setTimeout(() => document.getElementById(`${tab}_paste`).click(), 300);
  }, true);
})();
