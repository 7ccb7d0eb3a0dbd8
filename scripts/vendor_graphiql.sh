#!/usr/bin/env bash
# Refreshes the GraphiQL console's assets in server/static/graphiql/ from the npm registry (`npm pack`), so the
# console needs no CDN at run time. Versions are pinned here and in server/static/graphiql/VERSIONS.
set -euo pipefail
GRAPHIQL=3.8.3
REACT=18.3.1
cd "$(dirname "$0")/.."
out=server/static/graphiql
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "graphiql@$GRAPHIQL" "react@$REACT" "react-dom@$REACT" >/dev/null)
for pkg in "graphiql-$GRAPHIQL" "react-$REACT" "react-dom-$REACT"; do
  mkdir -p "$work/$pkg" && tar xzf "$work/$pkg.tgz" -C "$work/$pkg"
done
cp "$work/graphiql-$GRAPHIQL/package/graphiql.min.js" "$work/graphiql-$GRAPHIQL/package/graphiql.min.css" "$out/"
cp "$work/react-$REACT/package/umd/react.production.min.js" "$out/"
cp "$work/react-dom-$REACT/package/umd/react-dom.production.min.js" "$out/"
# no source maps are shipped: drop the comments that would make browsers' developer tools ask for them
sed -i '/^\/\/# sourceMappingURL=/d; s#/\*\# sourceMappingURL=[^*]*\*/##' "$out/graphiql.min.js" "$out/graphiql.min.css"
cp "$work/graphiql-$GRAPHIQL/package/LICENSE" "$out/LICENSE.graphiql"
cp "$work/react-$REACT/package/LICENSE" "$out/LICENSE.react"
echo "vendored graphiql $GRAPHIQL, react $REACT into $out"
