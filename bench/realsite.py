"""A real site under a real web server: our crawler (both engines) against Scrapy and wget2.

    .venv/bin/python bench/realsite.py [--repeat 3] [--only ours|async|scrapy|wget2] [--concurrency 16]
                                       [--dir DIR] [--json FILE] [--keep DIR]

The site is the HTML documentation of Python 3.11 as Debian packages it (``python3.11-doc``:
about 530 pages, 50 MB of HTML, the index pages with up to 17,000 links each), served as
static files by nginx on 127.0.0.1 and a free port. nginx, wget2 and the documentation are
installed with apt-get when missing (as root; otherwise the script says what to install).
nginx runs in the foreground as the current user, from a config written to a temporary
directory; nothing is installed as a service or left running.

Contenders, each a subprocess crawling the whole site from /index.html, robots.txt obeyed
(nginx answers 404: everything allowed), no delay, the same number of requests in flight
(``--concurrency``, all to the one host):

- ``ours``: ``crawler crawl URL -c SETTINGS -o OUT --fresh -q`` with ``engine = "threads"``;
- ``async``: the same with ``engine = "async"``; both keep each page's title, and take every
  link of a page (``max_links_per_page = 100000``: the indexes have more than the default 1000);
- ``scrapy``: ``scrapy runspider bench/scrapy_site_spider.py``, a CrawlSpider keeping titles;
- ``wget2``: ``wget2 -r -l inf --delete-after``, following <a>/<area> links only (images,
  stylesheets and scripts ignored, as the others do): fetch and follow, no fields, no output
  file, in C. The floor for "fetch everything, parse links".

The ground truth is computed from the files on disk, independently of the crawler's code
(stdlib ``html.parser`` and ``urljoin``): every HTML page reachable from index.html by
<a>/<area> links not marked nofollow, and its <title>. A run is valid if every such page was
requested (nginx's access log, per contender) and, for ours and Scrapy, recorded with status
200 and its title. Prints wall time, CPU, requests and the ratios the targets are stated in.

Then the floor parsing sets: lxml's CPU to parse every reachable page once, as the parser
processes do (``parsers.worker.html_parser``), in a fresh interpreter. No crawl that parses
each page with it ends before its first answer (nginx's ``$msec``) plus that CPU divided by
the cores; each of ours is given that floor and its ratio to wget2's time.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import posixpath
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import children_cpu, compile_ours, measure  # noqa: E402  (bench/run.py)

DOC_DIR = Path("/usr/share/doc/python3.11/html")
APT = {"nginx": "nginx", "wget2": "wget2"}  # binary -> Debian package
CONTENDERS = ("ours", "async", "scrapy", "wget2")

OUR_SETTINGS = """\
[crawl]
max_depth = -1
obey_robots = true
max_links_per_page = 100000

[fetch]
engine = "{engine}"
concurrency = {concurrency}
per_host_concurrency = {concurrency}
per_host_delay = 0

[[parse.rules]]
name = "page"
match = ".*"
fields.title = {{ xpath = "//title/text()" }}
"""

NGINX_CONF = """\
{user}worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    log_format bench '$msec $request_uri $status';
    access_log {tmp}/access.log bench;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    sendfile on;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        index index.html;
    }}
}}
"""


def ensure_installed(doc_dir: Path) -> None:
    """apt-get install what is missing (nginx, wget2, python3.11-doc), or say what is."""
    missing = [pkg for binary, pkg in APT.items() if not shutil.which(binary) and not Path(f"/usr/sbin/{binary}").exists()]
    if doc_dir == DOC_DIR and not doc_dir.is_dir():
        missing.append("python3.11-doc")
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"realsite: missing {', '.join(missing)}: apt-get install {' '.join(missing)}")
    print(f"installing {', '.join(missing)} with apt-get", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


# -- the server --

class Nginx:
    def __init__(self, root: Path, workdir: Path) -> None:
        self.tmp = workdir / "nginx"
        self.tmp.mkdir(parents=True, exist_ok=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""  # workers stay the current user
        conf = self.tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(user=user, tmp=self.tmp, port=self.port, root=root.resolve()))
        self.log = self.tmp / "access.log"
        self.proc = subprocess.Popen([nginx_binary(), "-p", str(self.tmp), "-c", str(conf), "-e",
                                      str(self.tmp / "error.log")], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"nginx did not start; see {self.tmp / 'error.log'}")
                time.sleep(0.05)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def requests_since(self, offset: int) -> list[tuple[float, str, int]]:
        """(time the answer was logged, seconds since the epoch; URI; status) of each request
        logged after ``offset``."""
        with open(self.log, "rb") as f:
            f.seek(offset)
            lines = f.read().decode("utf-8", "replace").splitlines()
        out = []
        for line in lines:
            msec, _, rest = line.partition(" ")
            uri, _, status = rest.rpartition(" ")
            if uri:
                out.append((float(msec), uri, int(status)))
        return out

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- the ground truth, from the files --

class _Scan(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.base: str | None = None
        self.title: str | None = None
        self._in_title = False
        self._title: list[str] = []
        self.nofollow = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("a", "area") and a.get("href") is not None:
            if "nofollow" not in (a.get("rel") or "").lower().split():
                self.hrefs.append(a["href"])
        elif tag == "base" and self.base is None and a.get("href") is not None:
            self.base = a["href"]
        elif tag == "title" and self.title is None:
            self._in_title = True
        elif tag == "meta" and (a.get("name") or "").lower() == "robots":
            words = {w.strip().lower() for w in (a.get("content") or "").split(",")}
            self.nofollow |= bool(words & {"nofollow", "none"})

    def handle_data(self, data):
        if self._in_title:
            self._title.append(data)

    def handle_endtag(self, tag):
        if tag == "title" and self._in_title:
            self._in_title = False
            self.title = "".join(self._title).strip()


def file_of(path: str) -> str:
    """The file nginx serves for a URL path, relative to the root."""
    path = posixpath.normpath(unquote(path))
    rel = path.lstrip("/")
    return posixpath.join(rel, "index.html") if path.endswith("/") or rel in ("", ".") else rel


def ground_truth(root: Path, origin: str) -> dict[str, str | None]:
    """{relative path: title} of every HTML page reachable from index.html."""
    pages: dict[str, str | None] = {}
    todo = ["index.html"]
    while todo:
        rel = todo.pop()
        if rel in pages:
            continue
        scan = _Scan()
        scan.feed((root / rel).read_text("utf-8", errors="replace"))
        pages[rel] = scan.title
        if scan.nofollow:
            continue
        base = urljoin(f"{origin}/{rel}", scan.base.strip()) if scan.base else f"{origin}/{rel}"
        for href in scan.hrefs:
            parts = urlsplit(urljoin(base, href.strip()))
            if f"{parts.scheme}://{parts.netloc}" != origin:
                continue
            target = file_of(parts.path)
            if target.endswith((".html", ".htm")) and (root / target).is_file() and target not in pages:
                todo.append(target)
    return pages


# -- one contender --

def command(contender: str, workdir: Path, url: str, concurrency: int) -> tuple[list[str], Path | None]:
    out = workdir / f"{contender}.jsonl"
    if contender == "wget2":
        return ["wget2", "-r", "-l", "inf", "-q", "--delete-after", "-P", str(workdir / "wget2"),
                f"--max-threads={concurrency}", "--ignore-tags=img,link,script,iframe,frame,embed,object,source",
                url], None
    if contender == "scrapy":
        seeds = workdir / "seeds.txt"
        seeds.write_text(url + "\n")
        return [sys.executable, "-m", "scrapy", "runspider", str(Path(__file__).with_name("scrapy_site_spider.py")),
                "-a", f"seeds_file={seeds}", "-s", f"CONCURRENT_REQUESTS={concurrency}",
                "-s", f"CONCURRENT_REQUESTS_PER_DOMAIN={concurrency}", "-O", f"{out}:jsonlines"], out
    settings = workdir / f"{contender}.toml"
    settings.write_text(OUR_SETTINGS.format(engine="async" if contender == "async" else "threads",
                                            concurrency=concurrency))
    script = Path(sys.executable).with_name("crawler")
    cli = [str(script)] if script.exists() else [sys.executable, "-m", "crawler"]
    return [*cli, "crawl", url, "-c", str(settings), "-o", str(out), "--fresh", "-q"], out


def run_contender(contender: str, nginx: Nginx, truth: dict, workdir: Path, args) -> dict:
    argv, out = command(contender, workdir, nginx.url("/index.html"), args.concurrency)
    if out is not None:
        out.unlink(missing_ok=True)
    shutil.rmtree(workdir / "wget2", ignore_errors=True)
    offset, cpu_before = nginx.log_size(), children_cpu()
    started = time.time()  # the clock of nginx's $msec
    with open(workdir / f"{contender}.log", "wb") as log:
        returncode, wall, sampler = measure(argv, log, workdir, args.timeout)
    cpu = max(children_cpu() - cpu_before, sum(sampler.cpu.values()))
    requests = nginx.requests_since(offset)
    requested = {file_of(urlsplit(uri).path) for _, uri, status in requests if status == 200}
    result = {"contender": contender, "returncode": returncode, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
              "requests": len(requests), "pages_requested": len(requested & truth.keys()),
              # from the start to the first answer (start-up, robots.txt, the first page)
              "first_answer_s": round(min(t for t, _, _ in requests) - started, 3) if requests else None}
    # wget2 exits 8 when the server answered an error, which the site's one broken link does.
    ok_codes = (0, 8) if contender == "wget2" else (0,)
    problems = [] if returncode in ok_codes else [f"exit status {returncode} (see {workdir / (contender + '.log')})"]
    if missing := truth.keys() - requested:
        problems.append(f"{len(missing)} of {len(truth)} pages never requested, e.g. {sorted(missing)[:3]}")
    if out is not None:
        recorded, wrong = titles_in(out, contender), []
        result["pages_recorded"] = len(recorded.keys() & truth.keys())
        if missing := truth.keys() - recorded.keys():
            problems.append(f"{len(missing)} of {len(truth)} pages not recorded with status 200, "
                            f"e.g. {sorted(missing)[:3]}")
        wrong = [rel for rel in truth.keys() & recorded.keys() if recorded[rel] != truth[rel]]
        if wrong:
            problems.append(f"{len(wrong)} pages with a wrong title, e.g. {wrong[0]}: {recorded[wrong[0]]!r} "
                            f"instead of {truth[wrong[0]]!r}")
    result["valid"], result["problems"] = not problems, problems
    return result


def titles_in(out: Path, contender: str) -> dict[str, str | None]:
    """{relative path: title} of the pages an output recorded with status 200."""
    titles: dict[str, str | None] = {}
    if not out.exists():
        return titles
    for line in out.read_bytes().splitlines():
        rec = orjson.loads(line)
        if rec.get("status") != 200 or rec.get("error"):
            continue
        title = rec.get("title") if contender == "scrapy" else (rec.get("data") or {}).get("title")
        titles[file_of(urlsplit(rec.get("final_url") or rec["url"]).path)] = title
    return titles


# -- report --

def parse_pass(paths: list[str]) -> float:
    """CPU seconds this process's lxml takes to parse each file once, with the parser (and
    options) the crawler's parser processes use; the files are read before timing starts."""
    from lxml import etree

    from parsers.worker import html_parser

    parser = html_parser()
    bodies = [Path(path).read_bytes() for path in paths]
    start = time.process_time()
    for body in bodies:
        etree.fromstring(body, parser)
    return time.process_time() - start


def parse_cpu(root: Path, truth: dict, repeat: int) -> float:
    """The median over ``repeat`` passes of ``parse_pass`` over every reachable page, each
    pass in a fresh interpreter (``--parse-pass``), so no cache is warm from an earlier one.
    The crawler's parser processes parse each page this way, once."""
    files = json.dumps([str(root / rel) for rel in sorted(truth)])
    passes = [float(subprocess.run([sys.executable, __file__, "--parse-pass"], input=files, text=True, check=True,
                                   capture_output=True).stdout)
              for _ in range(max(repeat, 1))]
    return statistics.median(passes)


def report(summaries: dict[str, dict], parse_s: float | None = None) -> None:
    scrapy, wget2 = summaries.get("scrapy"), summaries.get("wget2")
    head = ("contender", "valid", "wall s", "CPU s", "requests", "pages", "Scrapy wall / this", "this / wget2 wall")
    rows = [head]
    for name, s in summaries.items():
        rows.append((name, str(s["valid"]), f"{s['wall_s']:.2f}", f"{s['cpu_s']:.2f}", f"{s['requests']:.0f}",
                     f"{s.get('pages_recorded', s['pages_requested']):.0f}",
                     f"{scrapy['wall_s'] / s['wall_s']:.1f}" if scrapy else "-",
                     f"{s['wall_s'] / wget2['wall_s']:.2f}" if wget2 else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for row in rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths)))
    for name in ("ours", "async"):
        if name in summaries and scrapy and wget2:
            s = summaries[name]
            print(f"{name}: {scrapy['wall_s'] / s['wall_s']:.1f}x faster than Scrapy (target >= 10), "
                  f"{s['wall_s'] / wget2['wall_s']:.2f}x wget2's time (target <= 3)")
    if parse_s is not None:
        cpus = os.cpu_count() or 1
        print(f"lxml's parse of every reachable page: {parse_s:.2f} s of CPU, so at least {parse_s / cpus:.2f} s "
              f"of wall time on {cpus} CPUs, all of it after the first answer")
        for name in ("ours", "async"):
            if name in summaries and summaries[name].get("first_answer_s") is not None:
                s = summaries[name]
                floor = s["first_answer_s"] + parse_s / cpus
                line = (f"{name}: first answer after {s['first_answer_s']:.2f} s; no run can end before "
                        f"{floor:.2f} s (first answer + parse / CPUs)")
                if wget2:
                    line += f", {floor / wget2['wall_s']:.2f}x wget2's time"
                print(line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=DOC_DIR, help="the static site to serve")
    ap.add_argument("--only", action="append", choices=CONTENDERS)
    ap.add_argument("--repeat", type=int, default=1, help="interleaved runs per contender; medians shown")
    ap.add_argument("--concurrency", type=int, default=16, help="requests in flight, for every contender")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", type=Path, help="keep outputs, logs and nginx's files here")
    ap.add_argument("--no-floor", action="store_true", help="skip timing lxml's parse of the site")
    ap.add_argument("--parse-pass", action="store_true", help=argparse.SUPPRESS)  # parse_cpu's child
    args = ap.parse_args()
    if args.parse_pass:
        print(parse_pass(json.load(sys.stdin)))
        return 0
    contenders = args.only or list(CONTENDERS)
    ensure_installed(args.dir)
    compile_ours()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="crawler-realsite-"))
    workdir.mkdir(parents=True, exist_ok=True)
    nginx = Nginx(args.dir, workdir)
    runs: dict[str, list[dict]] = {c: [] for c in contenders}
    try:
        truth = ground_truth(args.dir, nginx.url("").rstrip("/"))
        print(f"site: {args.dir} under nginx on port {nginx.port}: {len(truth)} pages reachable from "
              f"index.html; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
              f"{args.concurrency} requests in flight; outputs in {workdir}", flush=True)
        for round_ in range(args.repeat):
            for contender in contenders:
                r = run_contender(contender, nginx, truth, workdir, args)
                runs[contender].append(r)
                note = "" if r["valid"] else "  INVALID: " + "; ".join(r["problems"])
                print(f"  {contender} run {round_ + 1}: {r['wall_s']:.2f} s, CPU {r['cpu_s']:.2f} s, "
                      f"{r['requests']} requests{note}", flush=True)
    finally:
        nginx.stop()
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    parse_s = None if args.no_floor else parse_cpu(args.dir, truth, args.repeat)
    summaries = {}
    for name, rs in runs.items():
        numeric = {k for r in rs for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        # A run with no request has no first answer (None): the median is over the runs that had one.
        summaries[name] = {k: statistics.median(v for r in rs if isinstance(v := r[k], (int, float)))
                           for k in numeric}
        summaries[name]["valid"] = all(r["valid"] for r in rs)
    print()
    report(summaries, parse_s)
    if args.json:
        args.json.write_text(json.dumps({"pages": len(truth), "concurrency": args.concurrency, "parse_cpu_s": parse_s,
                                         "summaries": summaries, "runs": runs}, indent=1))
    return 0 if all(s["valid"] for s in summaries.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
