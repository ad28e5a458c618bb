// Runs once when the conversation (a gr.HTML) is mounted; `element` and `trigger` come from Gradio.
// A click on a citation marker [n] (a <button data-cite="turn:n">) sends its key to the server as
// the custom "cite" event; the server answers by rendering the cited article in the side panel.
// The listener sits on the container, so markers added by later answers work without re-binding.
element.addEventListener("click", (event) => {
  const marker = event.target.closest("[data-cite]");
  if (!marker || !element.contains(marker)) return;
  event.preventDefault();
  const key = marker.getAttribute("data-cite");
  element.querySelectorAll(".sanad-cite.is-active").forEach((node) => node.classList.remove("is-active"));
  element.querySelectorAll("[data-cite]").forEach((node) => {
    if (node.getAttribute("data-cite") === key) node.classList.add("is-active");
  });
  trigger("cite", { key: key });
});
