#!/usr/bin/env bash
# Fetches (once per version) the Neo4j community server the tests run and prints its jar directory. The version is
# the neo4j role's image tag (roles/neo4j/defaults/main.yml, neo4j_image: ...neo4j:<version>-community); Maven
# resolves org.neo4j:neo4j and org.neo4j.app:neo4j-server from Maven Central (tools/neo4j/pom.xml) into
# ~/.cache/ailab-gpu_lab/neo4j-<version>/lib, outside the checkout, so fresh clones on the same machine (CI) reuse it.
# Needs java (17 or 21) and mvn: tools/system-deps.sh installs them.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
version="$(sed -n 's/^neo4j_image: *[^ ]*neo4j:\([0-9][0-9.]*\)-community.*/\1/p' "$root/roles/neo4j/defaults/main.yml")"
[ -n "$version" ] || { echo "no neo4j:<version>-community image in roles/neo4j/defaults/main.yml" >&2; exit 1; }
dir="${AILAB_NEO4J_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/ailab-gpu_lab/neo4j-$version}"
if [ ! -f "$dir/lib/.complete" ]; then
  mkdir -p "$dir"
  rm -rf "$dir/lib.tmp"
  nice -n 10 mvn -B -q -f "$root/tools/neo4j/pom.xml" -Dneo4j.version="$version" \
    dependency:copy-dependencies -DoutputDirectory="$dir/lib.tmp" -DincludeScope=runtime >&2
  touch "$dir/lib.tmp/.complete"
  rm -rf "$dir/lib" && mv "$dir/lib.tmp" "$dir/lib"
fi
echo "$dir/lib"
