"""Console page views, one module per area. Views stay thin: they authorise, read through the
selectors and render; every write goes through the REST API from the page's script, so the
console shows the API's own validation errors and needs no second copy of the rules."""
