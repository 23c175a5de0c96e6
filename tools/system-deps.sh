#!/usr/bin/env bash
# Debian packages the tests drive for real: nix-instantiate (nix-bin; the provision tests parse and
# evaluate the rendered NixOS files) and promtool (prometheus; tests/functional/test_monitoring_rules.py
# and test_monitoring_queries.py run `promtool check rules` and `promtool test rules`), chromium and
# chromium-driver (tests/functional/test_open_webui_browser.py drives Open WebUI in it with selenium), Java 17 and
# Maven (tools/neo4j-server.sh fetches the Neo4j community server from Maven Central; tests/functional/test_neo4j_schema.py
# runs it).
set -euo pipefail
need=()
command -v nix-instantiate >/dev/null 2>&1 || need+=(nix-bin)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${need[*]}; run as root or: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}"
# Debian's prometheus package starts a server; the tests need only promtool.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
