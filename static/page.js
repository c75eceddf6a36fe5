// Screen-reader names Gradio does not give: the caption boxes, the file input and the
// example buttons. Re-applied on every DOM change, as Gradio re-renders components.
() => {
  const name = (el, label) => { if (el && el.getAttribute("aria-label") !== label) {
    el.setAttribute("aria-label", label); } };
  const apply = () => {
    for (const id of ["rag-caption", "classic-caption"]) {
      const info = document.querySelector(`#${id} [data-testid=block-info]`);
      name(document.querySelector(`#${id} textarea`), info ? info.textContent.trim() : id);
    }
    name(document.querySelector("#query-image input[type=file]"), "Upload a medical image");
    document.querySelectorAll("#examples button").forEach((button) => {
      const img = button.querySelector("img");
      if (!img) return;
      const file = decodeURIComponent(img.src.split("/").pop());
      const what = file.replace(/\.[a-z]+$/i, "").replace(/^demo-\d+-/, "").replace(/-/g, " ");
      name(button, `Example image: synthetic ${what}`);
    });
    const status = document.querySelector("#status");
    if (status && !status.getAttribute("aria-live")) status.setAttribute("aria-live", "polite");
  };
  new MutationObserver(apply).observe(document.body, { childList: true, subtree: true });
  apply();
}
