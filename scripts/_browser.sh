# Sourced by scripts/test: the browser tests (pytest -m browser) drive headless
# Chromium through chromedriver, both from Debian's packages. Install them when
# either is missing; selenium itself never downloads a browser.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "browser tests need chromium and chromium-driver: installing them with apt-get" >&2
    if [ "$(id -u)" -ne 0 ]; then
        echo "not root: run 'sudo apt-get install chromium chromium-driver', or deselect the browser tests with -m 'not browser'" >&2
        exit 1
    fi
    echo "+ apt-get update" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update
    echo "+ apt-get install -y chromium chromium-driver" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver
fi
