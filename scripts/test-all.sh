#!/usr/bin/env bash
# Runs every check and test, then prints "N passed, N failed" as its last line.
#  1. the committed wire code matches proto/ (regenerated here)
#  2. types check (tsc -b, strict)
#  3. lint (eslint: floating promises, type imports, import cycles) and format (prettier --check)
#  4. bundles build
#  5. vitest: the unit project (tests beside the code, in parallel), then the e2e project
#     (test/ with real daemons, and package tests that start a real service; one file at a time)
# Each of 1-4 that fails counts as one failed test in the last line.
set -uo pipefail
cd "$(dirname "$0")/.."
report="$(mktemp -d)/vitest.json"
checks_failed=0

step() { printf '\n== %s\n' "$*"; }

# Debian packages the tests start for real (the site suites add nginx, php-fpm, mariadb-server).
# wordpress, mediawiki: test/e2e/debian-platforms.test.ts converges their real trees
# (/usr/share/wordpress, /usr/share/mediawiki) and fails, naming the package, without them.
# apache2-bin: the apache templates are checked with apache2 -t.
# nginx-light, php-fpm: test/e2e/webconfig.test.ts starts a private nginx (and php-fpm) and
# serves a platform through the config the agent wrote.
# php-cli, php-mysql, php-gd, php-xml, php-mbstring, curl: test/e2e/drupal.test.ts installs real Drupal 7
# and 9 sites (the agent's site tool runs with the PHP command line; php-fpm loads those
# extensions) and logs in with curl.
# mariadb-server, mariadb-client: packages/agent/src/db/db.test.ts starts a private mariadbd and
# runs mariadb-dump / mariadb against it.
# zip: the build tests and the build fuzz suite make real zip archives with it (unzip reads them).
# php-symfony-yaml: packages/master/src/sites/aliases.test.ts reads the drush alias files with
# Symfony's YAML parser, the one drush 9+ loads them with.
APT_PACKAGES=(git patch unzip zip bzip2 xz-utils wordpress mediawiki nginx-light apache2-bin php-fpm mariadb-server mariadb-client php-symfony-yaml php-cli php-mysql php-gd php-xml php-mbstring curl pebble openssl)
if [ ${#APT_PACKAGES[@]} -gt 0 ]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    step "installing ${missing[*]}"
    apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" || checks_failed=$((checks_failed + 1))
  fi
fi

step "wire code is up to date with proto/"
if node scripts/gen-proto.mjs >/dev/null && { ! git rev-parse --git-dir >/dev/null 2>&1 || git diff --exit-code --stat -- packages/shared/src/gen; }; then
  echo ok
else
  echo "FAIL: packages/shared/src/gen differs from what proto/ generates; run pnpm gen and commit"
  checks_failed=$((checks_failed + 1))
fi

step "typecheck"
if pnpm -s typecheck; then echo ok; else echo "FAIL: typecheck"; checks_failed=$((checks_failed + 1)); fi

step "lint"
if pnpm -s lint; then echo ok; else echo "FAIL: lint (pnpm lint; pnpm lint --fix fixes type imports)"; checks_failed=$((checks_failed + 1)); fi

step "format"
if pnpm -s format:check; then echo ok; else echo "FAIL: format (pnpm format rewrites the files listed above)"; checks_failed=$((checks_failed + 1)); fi

step "build"
if pnpm -s build; then :; else echo "FAIL: build"; checks_failed=$((checks_failed + 1)); fi

step "tests"
pnpm -s vitest run --reporter=default --reporter=json --outputFile.json="$report"
vitest_rc=$?

passed=0
failed=0
if [ -s "$report" ]; then
  read -r passed failed < <(node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    console.log(r.numPassedTests, r.numFailedTests + (r.numRuntimeErrors ?? 0));
  ' "$report")
else
  failed=1
fi
failed=$((failed + checks_failed))
if [ "$vitest_rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
