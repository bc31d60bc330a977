// Put into the page head by the extension loader. Extensions' scripts run after the page's own.
window.paragogerExampleExtension = {loaded: true};
