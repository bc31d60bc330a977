// "Apply and restart" (Extensions tab): the server goes away and comes back as a fresh process; wait for that,
// then reload the page so it shows the restarted app (its extensions, its scripts).
window.paragogerAwaitRestart = async () => {
  const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const answers = async () => {
    try {
      await fetch(window.location.pathname, {cache: "no-store"});
      return true;
    } catch (err) {
      return false;
    }
  };
  // First the old server stops answering (it waits for running jobs), then the new one answers.
  for (let i = 0; i < 600 && await answers(); i++) await pause(500);
  while (!await answers()) await pause(1000);
  window.location.reload();
};
