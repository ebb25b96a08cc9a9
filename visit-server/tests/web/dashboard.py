"""The dashboard in a real browser: three replicas on loopback, one of them stopped, their
reads protected by a read token as in prod (--read-token-file).

Loads /dashboard of one replica in headless Chromium (Debian's, driven by Playwright) with
JavaScript off: without credentials Chromium gets the 401; with HTTP credentials (any user
name, the token as the password: what a person types into the browser's prompt) it checks
what a person would see against /stats?scope=cluster: every bar's day, replica and count,
the totals, the top addresses, the stopped replica named, and that the page loaded nothing
but itself; then follows the page's JSON and CSV links, which load too. Screenshots go to
target/dashboard/.

    python dashboard.py [--update-docs]   # --update-docs also copies docs/dashboard.png

Run by .ci/steps/60-dashboard-browser, which installs Chromium and Playwright.
"""

import argparse
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from replicas import ROOT, Replicas, get, history

CHROMIUM = "/usr/bin/chromium"
# No network but loopback is reachable; keep Chromium from trying anyway.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
OUT = ROOT / "target/dashboard"


def check(cond, what):
    if not cond:
        raise SystemExit(f"dashboard.py: FAILED: {what}")
    print(f"ok: {what.splitlines()[0][:150]}")


def seed():
    """Some weeks of history per replica, so the chart has 30 days and more to choose from."""
    ips = [f"198.51.100.{i}" for i in range(1, 40)] + ["2001:db8:7::1", "2001:db8:7::2"]
    return [
        history(45, lambda d: 6 + (d * 7) % 11, ips, seed=0),
        history(30, lambda d: 4 + (d * 5) % 9, ips[3:], seed=1),
        history(12, lambda d: 2 + d % 4, ips[8:], seed=2),
    ]


def record_visits(r):
    """Today's visits, through each replica's GET / (as from behind a trusted proxy)."""
    for i in range(3):
        statuses = [
            get(r.url(i, "/"), {"X-Forwarded-For": f"203.0.113.{1 + (k * (i + 1)) % 13}"})[0]
            for k in range(4 + 3 * i)
        ]
        check(set(statuses) == {200}, f"GET / on {r.names[i]} recorded {len(statuses)} visits")


def expected_bars(stats):
    days = [d["day"] for d in stats["total"]["days"][:30]]
    return {
        (d["day"], rep["name"], d["visits"])
        for rep in stats["replicas"]
        for d in rep["days"]
        if d["day"] in days
    }


def follow_links(page, url):
    """Clicks each link of the dashboard's footer, as a person would, from the page: the JSON
    and the CSV exports load (200) with the browser's credentials; a CSV may come as a
    download, which is read."""
    base = url.rsplit("/", 1)[0]
    links = [a.get_attribute("href") for a in page.locator("footer a[href]").all()]
    check(
        any("format=csv" in h for h in links) and any(h.startswith("/stats") and "csv" not in h for h in links),
        f"the footer links JSON and CSV exports: {links}",
    )
    for href in links:
        page.goto(url, wait_until="load")
        target = base + href
        with page.expect_response(lambda resp: resp.url == target and resp.status != 401) as answer:
            if "format=csv" in href:
                with page.expect_download() as download:
                    page.click(f'footer a[href="{href}"]')
                text = Path(download.value.path()).read_text()
            else:
                page.click(f'footer a[href="{href}"]')
                page.wait_for_load_state("load")
                text = page.locator("body").inner_text()
        resp = answer.value
        kind = resp.headers.get("content-type", "")
        check(resp.status == 200, f"{href} loads in Chromium: {resp.status} {kind}")
        first = text.splitlines()[0] if text else ""
        if "format=csv" in href:
            check(kind.startswith("text/csv") and first.endswith(("count", "ip")), f"  a CSV: {first!r}")
        elif href.startswith("/stats") or href.endswith(".json"):
            check(kind.startswith("application/json"), f"  JSON: {first[:60]!r}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--update-docs", action="store_true", help="copy the screenshot to docs/")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)

    token = secrets.token_hex(32)
    credentials = {"username": "reader", "password": token}
    with Replicas(3, ["--trusted-proxy", "127.0.0.1"], seed=seed(), token=token) as r:
        record_visits(r)
        stopped = 2
        r.stop(stopped)
        url = r.url(0, "/dashboard")
        before = r.stats(0)
        check(
            [m["address"] for m in before["missing"]] == [r.addresses[stopped]],
            f"/stats?scope=cluster lists the stopped replica as missing: {before['missing']}",
        )

        status, headers, body = get(url)
        check(status == 401, f"GET /dashboard without the token is 401 ({status})")
        check(
            headers["WWW-Authenticate"] == 'Basic realm="visit-server", charset="UTF-8"',
            f"its WWW-Authenticate asks for Basic credentials ({headers['WWW-Authenticate']})",
        )
        status, headers, body = get(url, r.auth)
        check(status == 200, f"GET /dashboard with the token is 200 ({status})")
        check(
            headers["Content-Type"] == "text/html; charset=utf-8",
            f"Content-Type is text/html; charset=utf-8 ({headers['Content-Type']})",
        )
        check(headers["Content-Security-Policy"] == CSP, f"CSP is {CSP!r}")

        with tempfile.TemporaryDirectory(prefix="chromium-") as profile, sync_playwright() as p:
            # A browser without the token gets the 401 and nothing of the page: with no
            # credentials to offer, Chromium (as Playwright drives it) gives up on the
            # challenge; with a wrong password it shows the 401's text.
            def chromium(**options):
                return p.chromium.launch_persistent_context(
                    profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, **options
                )

            for wrong in (None, {"username": "reader", "password": "not-" + token}):
                ctx = chromium(
                    java_script_enabled=False, **({"http_credentials": wrong} if wrong else {})
                )
                page = ctx.new_page()
                answers = []
                page.on("response", lambda resp: answers.append(resp.status))
                what = "a wrong password" if wrong else "no credentials"
                try:
                    page.goto(url, wait_until="load")
                except PlaywrightError as e:
                    check(wrong is None, f"Chromium with {what} gives up: {str(e).splitlines()[0]}")
                check(answers and set(answers) == {401}, f"Chromium with {what} gets {answers}")
                check(
                    page.locator("svg rect[data-day]").count() == 0,
                    f"and sees no chart ({page.locator('body').inner_text()[:40]!r})",
                )
                ctx.close()

            # With HTTP credentials (the browser's prompt, answered).
            ctx = chromium(
                java_script_enabled=False,
                viewport={"width": 960, "height": 900},
                http_credentials=credentials,
            )
            requests, violations = [], []
            page = ctx.new_page()
            page.on("request", lambda rq: requests.append(rq.url))
            page.on(
                "console",
                lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
            )
            started = time.monotonic()
            response = page.goto(url, wait_until="load")
            took = time.monotonic() - started
            check(response.status == 200, f"Chromium loaded {url} in {took:.2f}s")
            page.wait_for_timeout(300)  # let a late favicon request show up, if any
            page.screenshot(path=str(OUT / "dashboard.png"), full_page=True)

            bars = set()
            for rect in page.locator("svg rect[data-day]").all():
                bars.add(
                    (
                        rect.get_attribute("data-day"),
                        rect.get_attribute("data-replica"),
                        int(rect.get_attribute("data-count")),
                    )
                )
                title = rect.locator("title").text_content()
                d, name, n = rect.get_attribute("data-day"), rect.get_attribute("data-replica"), rect.get_attribute("data-count")
                want = f"{name}, {d}: {n} visit{'' if n == '1' else 's'}"
                if title != want:
                    raise SystemExit(f"bar title {title!r}, expected {want!r}")
            want = expected_bars(before)
            check(len(want) > 30, f"the history has {len(want)} (day, replica) counts to chart")
            check(bars == want, f"the bars' counts equal /stats?scope=cluster: {len(bars)} bars\n"
                  f"only on the page: {sorted(bars - want)}\nonly in /stats: {sorted(want - bars)}")
            days = {b[0] for b in bars}
            check(len(days) == 30, f"30 days charted ({len(days)})")
            check({b[1] for b in bars} == set(r.names[:2]), "bars for both answering replicas")

            totals = {
                tr.get_attribute("data-total-replica"): int(tr.get_attribute("data-total"))
                for tr in page.locator("tr[data-total-replica]").all()
            }
            check(
                totals == {rep["name"]: rep["visits"] for rep in before["replicas"]},
                f"per-replica totals equal /stats: {totals}",
            )
            top = [
                (tr.get_attribute("data-ip"), int(tr.get_attribute("data-count")))
                for tr in page.locator("tr[data-ip]").all()
            ]
            check(
                top == [(x["ip"], x["visits"]) for x in before["total"]["ips"][:10]],
                f"the top 10 addresses equal /stats: {top[:3]}...",
            )
            missing = [m.get_attribute("data-missing") for m in page.locator("[data-missing]").all()]
            check(missing == [r.addresses[stopped]], f"the stopped replica is named: {missing}")
            notice = page.locator("[data-missing]").first
            check(notice.is_visible(), "the missing notice is visible")
            check(r.addresses[stopped] in notice.text_content(), "the notice shows its address")

            check(page.locator("script").count() == 0, "the page has no script")
            # (With Basic credentials Chromium may ask twice: once bare, once answering the
            # challenge.)
            check(set(requests) == {url}, f"the page loaded nothing but itself: {requests}")
            check(violations == [], f"no CSP violation reported: {violations}")
            follow_links(page, url)
            ctx.close()

            # At phone width (JavaScript on, only to measure the layout).
            ctx = chromium(
                viewport={"width": 390, "height": 844},
                device_scale_factor=2,
                http_credentials=credentials,
            )
            page = ctx.new_page()
            page.goto(url, wait_until="load")
            page.screenshot(path=str(OUT / "dashboard-phone.png"), full_page=True)
            width = page.evaluate("document.documentElement.scrollWidth")
            check(width <= 390, f"no sideways scrolling at phone width ({width}px <= 390px)")
            ctx.close()

        after = r.stats(0)
        check(
            after["total"]["visits"] == before["total"]["visits"],
            "loading the dashboard recorded no visit",
        )
        r.assert_token_never_printed()
        check(True, "no replica printed the token")
    print(f"screenshots: {OUT}/dashboard.png, {OUT}/dashboard-phone.png")
    if args.update_docs:
        docs = ROOT / "docs/dashboard.png"
        docs.parent.mkdir(exist_ok=True)
        shutil.copyfile(OUT / "dashboard.png", docs)
        print(f"copied to {docs}")
    print("dashboard.py: all green")


if __name__ == "__main__":
    sys.exit(main())
