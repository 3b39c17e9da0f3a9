#!/usr/bin/env bash
# Makes the dashboard's pictures in docs/images (dashboard.png, dashboard-dark.png and
# dashboard-phone.png) from real embedded stores: three hosts served through the
# dashboard's test seam (two with reservations, a queue and 90 days of history, NVML on
# the first through the test suite's stub library, and one whose store is down), shot
# by a headless Chromium that reaches nothing but 127.0.0.1.
# Needs the Debian packages chromium and chromium-driver (scripts/test.sh installs them)
# and gcc (for the NVML stub).
# Usage: scripts/screenshot.sh
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in chromium chromedriver gcc; do
    if ! command -v "$tool" >/dev/null; then
        echo "scripts/screenshot.sh: $tool is missing (apt-get install chromium chromium-driver gcc)" >&2
        exit 1
    fi
done
mkdir -p docs/images
CANHAZGPU_SCREENSHOT_DIR=$PWD/docs/images CANHAZGPU_REQUIRE_BROWSER=1 \
    cargo test --locked --bin canhazgpu web::tests::screenshot -- --ignored --exact --quiet
ls -l docs/images/dashboard*.png
