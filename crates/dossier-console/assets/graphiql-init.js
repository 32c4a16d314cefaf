// Starts GraphiQL on the page's #graphiql element. A file of its own, not an inline script:
// the console's Content-Security-Policy allows scripts from the server only.
(function () {
  var root = document.getElementById('graphiql');
  var ws = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/graphql';
  var fetcher = GraphiQL.createFetcher({ url: '/graphql', subscriptionUrl: ws });
  var props = { fetcher: fetcher, defaultEditorToolsVisibility: true };
  // With access = "keys" every request needs a key: offer the header to fill in rather than
  // leave the first query to fail with 401.
  if (root.getAttribute('data-access') === 'keys') {
    props.defaultHeaders = '{\n  "Authorization": "Bearer dsk_..."\n}';
  }
  ReactDOM.createRoot(root).render(React.createElement(GraphiQL, props));
})();
