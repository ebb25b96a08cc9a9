"""visit-server/openapi.json against the server it describes.

1. openapi-spec-validator: the document is valid OpenAPI 3.1.
2. Two live replicas on loopback (each the other's peer), both with a read token
   (--read-token-file, as in prod): /openapi.json is the file byte for byte; every
   documented path answers its GET and HEAD with a documented status, with and without the
   token, and exactly the operations that declare the token's schemes answer 401 without it;
   every other method gets 405 and `Allow: GET, HEAD`; paths that are not documented are 404.
3. schemathesis, with the token: generated requests, valid and invalid, to every operation:
   no 5xx, and every status code, header, media type and body conforms to the document
   (its `ignored_auth` check also sends them without the token and expects the 401).

Run by .ci/steps/70-openapi, which installs the pinned tools; reports go to
target/openapi/.
"""

import json
import secrets
import subprocess
import sys
import time

from replicas import ROOT, Replicas, get

DOC = ROOT / "visit-server/openapi.json"
OUT = ROOT / "target/openapi"
METHODS = ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "QUERY"]


def check(cond, what):
    if not cond:
        raise SystemExit(f"conformance.py: FAILED: {what}")
    print(f"ok: {what}")


def request(url, method, headers=None):
    """(status, headers) of a bodiless request with any method."""
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        c.request(method, u.path + (f"?{u.query}" if u.query else ""), headers=headers or {})
        r = c.getresponse()
        r.read()
        return r.status, r.headers
    finally:
        c.close()


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    subprocess.run(["openapi-spec-validator", str(DOC)], check=True)
    doc = json.loads(DOC.read_text())
    check(doc["openapi"].startswith("3.1."), f"the document is OpenAPI {doc['openapi']}")

    token = secrets.token_hex(32)
    with Replicas(2, token=token) as r:
        status, headers, body = get(r.url(0, "/openapi.json"))
        check(status == 200, "GET /openapi.json is 200")
        check(headers["Content-Type"] == "application/json", "it is application/json")
        check(body == DOC.read_bytes(), "it is visit-server/openapi.json byte for byte")

        schemes = set(doc["components"]["securitySchemes"])
        for path, item in doc["paths"].items():
            methods = {m.upper() for m in item if m in ("get", "head", "post", "put", "delete")}
            check(methods == {"GET", "HEAD"}, f"{path} documents GET and HEAD")
            for method in ("GET", "HEAD"):
                op = item[method.lower()]
                documented = {int(s) for s in op["responses"]}
                protected = bool(op.get("security"))
                if protected:
                    declared = {name for req in op["security"] for name in req}
                    check(declared == schemes, f"{method} {path} accepts {sorted(declared)}")
                status, headers = request(r.url(0, path), method)
                check(status in documented, f"{method} {path} is {status}, documented")
                check((status == 401) == protected, f"{method} {path} without the token: {status}")
                if protected:
                    check(
                        headers["WWW-Authenticate"] == 'Basic realm="visit-server", charset="UTF-8"',
                        f"{method} {path}'s 401 challenges for Basic credentials",
                    )
                status, _ = request(r.url(0, path), method, r.auth)
                check(status in documented and status != 401, f"{method} {path} with the token is {status}")
            for method in METHODS:
                status, headers = request(r.url(0, path), method)
                check(
                    (status, headers.get("Allow")) == (405, "GET, HEAD"),
                    f"{method} {path} is 405 with Allow: GET, HEAD",
                )
        # Bad queries are 400. schemathesis' own check of this (negative_data_rejection) is
        # off below: it makes up extra query keys with null or empty-list values, which its
        # HTTP client then leaves out of the URL, so the request it calls invalid is valid.
        for query in [
            "/visits?limit=-1",
            "/visits?limit=x",
            "/visits?limit=%2B1",
            "/visits?limit=18446744073709551616",
            "/visits?limit=1&limit=1",
            "/visits?format=xml",
            "/visits?scope=global",
            "/visits?scope=cluster&limit=10001",
            "/visits?nope=1",
            "/visits?limit",
            "/stats?format=text",
            "/stats?limit=1",
            "/stats?scope=",
        ]:
            status, _, _ = get(r.url(0, query), r.auth)
            check(status == 400, f"GET {query} is 400")

        for path in ["/favicon.ico", "/nope", "/visits/", "/%76isits", "/dashboard/"]:
            for method in ("GET", "HEAD", "POST"):
                status, _ = request(r.url(0, path), method)
                check(status == 404, f"{method} {path} (not documented) is 404")

        started = time.monotonic()
        st = subprocess.run(
            [
                "schemathesis", "run", str(DOC),
                "--url", f"http://{r.addresses[0]}",
                # The prod replicas' Secret: every generated request carries the token.
                "--header", f"Authorization: Bearer {token}",
                "--checks", "all",
                "--exclude-checks", "negative_data_rejection",
                "--max-examples", "100",
                "--workers", "2",
                "--request-timeout", "10",
                "--report", "junit",
                "--report-dir", str(OUT),
                "--no-color",
            ],
            cwd=OUT,
        )
        check(st.returncode == 0, f"schemathesis found no mismatch ({time.monotonic() - started:.1f}s)")
        # Hostile and generated requests alike left the replicas serving.
        for i in range(2):
            check(get(r.url(i, "/readyz"))[0] == 200, f"{r.names[i]} still ready")
        r.assert_token_never_printed()
        check(True, "neither replica printed the token")
    print("conformance.py: all green")


if __name__ == "__main__":
    sys.exit(main())
