// Runs once when the source panel (a gr.HTML) is mounted. Each time the server renders a cited
// article into it, scroll the article box so the highlighted quote (<mark>) is in view, without
// moving the page; on narrow screens, where the panel sits under the chat, bring the panel up.
watch("value", () => {
  const mark = element.querySelector("mark");
  const box = element.querySelector(".sanad-article");
  if (!mark || !box) return;
  const markTop = mark.getBoundingClientRect().top - box.getBoundingClientRect().top + box.scrollTop;
  box.scrollTo({ top: Math.max(0, markTop - box.clientHeight / 3), behavior: "smooth" });
  if (window.matchMedia("(max-width: 900px)").matches) {
    element.scrollIntoView({ behavior: "smooth", block: "start" });
  }
});
