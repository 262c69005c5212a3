"""Settings: packaged defaults < settings.toml < command line, merged by one pure function.

The defaults live in ``crawler/defaults.toml`` (the repo's ``settings.toml`` is the same
file), so the documented defaults and the shipped ones cannot drift. The dataclasses below
carry no defaults of their own: their annotations are the type schema that every value
is checked against, and ``CHECKS`` adds the range and choice checks.

Everything is validated before anything is fetched. A problem raises ``UsageError`` with
one line that names the file, the key and, for parse rules, the rule.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crawler.errors import UsageError
from crawler.hostrules import HostRule, build_host_rules
from crawler.rules import FieldRule, Rule, build_rules, closest, compile_regex, resolve_callable  # noqa: F401 (re-exported)

DEFAULTS_PATH = Path(__file__).with_name("defaults.toml")


@dataclass(frozen=True)
class CrawlSettings:
    seeds: list[str]
    allowed_domains: list[str]
    max_depth: int
    max_pages: int
    allow: list[str]
    deny: list[str]
    obey_robots: bool
    user_agent: str
    max_url_length: int
    max_links_per_page: int
    sitemaps: bool


@dataclass(frozen=True)
class FetchSettings:
    engine: str
    concurrency: int
    per_host_concurrency: int
    per_host_delay: float
    timeout: float
    max_bytes: int
    max_redirects: int
    retries: int
    retry_statuses: list[int]
    backoff: float
    max_crawl_delay: float
    allow_private_networks: bool
    autothrottle: bool  # [added] the delay follows the server (crawler/fetch/throttle.py)
    autothrottle_target_concurrency: float  # [added]
    hosts: tuple[HostRule, ...]  # [added] [[fetch.hosts]] rules (crawler/hostrules.py)


@dataclass(frozen=True)
class ParseSettings:
    workers: int
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class OutputSettings:
    path: str
    warc: str  # [added] "" = no WARC capture


@dataclass(frozen=True)
class StateSettings:
    backend: str
    redis_url: str
    redis_key: str
    lease_timeout: float


@dataclass(frozen=True)
class ScheduleSettings:
    every: str
    cron: str


@dataclass(frozen=True)
class Settings:
    crawl: CrawlSettings
    fetch: FetchSettings
    parse: ParseSettings
    output: OutputSettings
    state: StateSettings
    schedule: ScheduleSettings
    source: str = "defaults"

    @property
    def parse_workers(self) -> int:
        return self.parse.workers or os.cpu_count() or 1


SECTIONS: dict[str, type] = {
    "crawl": CrawlSettings,
    "fetch": FetchSettings,
    "parse": ParseSettings,
    "output": OutputSettings,
    "state": StateSettings,
    "schedule": ScheduleSettings,
}

# (section, key) -> (predicate, what it must be). Types are checked from the annotations.
CHECKS: dict[tuple[str, str], tuple[typing.Callable[[Any], bool], str]] = {
    ("crawl", "max_depth"): (lambda v: v >= -1, ">= -1"),
    ("crawl", "max_pages"): (lambda v: v >= 0, ">= 0"),
    ("crawl", "max_url_length"): (lambda v: v >= 16, ">= 16"),
    ("crawl", "max_links_per_page"): (lambda v: v >= 0, ">= 0"),
    ("fetch", "engine"): (lambda v: v in ("threads", "async"), 'one of "threads", "async"'),
    ("fetch", "concurrency"): (lambda v: 1 <= v <= 4096, "between 1 and 4096"),
    ("fetch", "per_host_concurrency"): (lambda v: v >= 1, ">= 1"),
    ("fetch", "per_host_delay"): (lambda v: v >= 0, ">= 0"),
    ("fetch", "timeout"): (lambda v: v > 0, "> 0"),
    ("fetch", "max_bytes"): (lambda v: v > 0, "> 0"),
    ("fetch", "max_redirects"): (lambda v: v >= 0, ">= 0"),
    ("fetch", "retries"): (lambda v: v >= 0, ">= 0"),
    ("fetch", "retry_statuses"): (lambda v: all(100 <= s <= 599 for s in v), "HTTP statuses (100-599)"),
    ("fetch", "backoff"): (lambda v: v >= 0, ">= 0"),
    ("fetch", "max_crawl_delay"): (lambda v: v >= 0, ">= 0"),
    ("fetch", "autothrottle_target_concurrency"): (lambda v: v > 0, "> 0"),
    ("parse", "workers"): (lambda v: 0 <= v <= 256, "between 0 and 256"),
    ("output", "path"): (lambda v: bool(v.strip()), "a non-empty path"),
    ("state", "backend"): (lambda v: v in ("sqlite", "redis"), 'one of "sqlite", "redis"'),
    ("state", "redis_url"): (lambda v: v.startswith(("redis://", "rediss://", "unix://")),
                             'a URL "redis://host:port/db" (or rediss://, unix://)'),
    ("state", "redis_key"): (lambda v: not v or v.replace("-", "").replace("_", "").replace(".", "").isalnum(),
                             'letters, digits, ".", "-" and "_" only'),
    ("state", "lease_timeout"): (lambda v: 1 <= v <= 3600, "between 1 and 3600 seconds"),
}

def read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"{path}: settings file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read settings: {exc.strerror}") from None


def merge(base: dict, *layers: dict) -> dict:
    """Deep-merge dicts: later layers win; tables merge key by key, everything else replaces."""
    out = dict(base)
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = value
    return out


def dotted_to_nested(overrides: dict[str, Any]) -> dict:
    """{"fetch.concurrency": 4} -> {"fetch": {"concurrency": 4}}. None values are dropped."""
    nested: dict = {}
    for key, value in overrides.items():
        if value is None:
            continue
        section, _, name = key.partition(".")
        nested.setdefault(section, {})[name] = value
    return nested


def key_section(name: str) -> str | None:
    """The section that owns a (globally unique) key name, for flat API overrides."""
    for section, cls in SECTIONS.items():
        if name in {f.name for f in dataclasses.fields(cls)}:
            return section
    return None


def load_settings(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Defaults < the file at ``path`` (or ./settings.toml if present) < dotted ``overrides``."""
    defaults = read_toml(DEFAULTS_PATH)
    layer: dict = {}
    source = "defaults"
    if path is None and Path("settings.toml").is_file():
        path = "settings.toml"
    if path is not None:
        source = str(path)
        layer = read_toml(Path(path))
        check_known_keys(layer, defaults, source)
    cli = dotted_to_nested(overrides or {})
    check_known_keys(cli, defaults, "command line")
    merged = merge(defaults, layer, cli)
    return build(merged, source)


def check_known_keys(layer: dict, defaults: dict, source: str) -> None:
    for section, table in layer.items():
        if section not in SECTIONS:
            raise UsageError(f"{source}: unknown section [{section}] (known: {', '.join(SECTIONS)})")
        if not isinstance(table, dict):
            raise UsageError(f"{source}: [{section}] must be a table")
        known = {f.name for f in dataclasses.fields(SECTIONS[section])}
        for key in table:
            if key not in known:
                hint = closest(key, known)
                raise UsageError(f"{source}: [{section}] {key}: unknown key{hint}")


def build(merged: dict, source: str) -> Settings:
    sections: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        table = merged.get(section, {})
        if section == "parse":
            workers = _check_value(source, "parse", "workers", table.get("workers"), int)
            rules = build_rules(table.get("rules", []), source)
            sections[section] = ParseSettings(workers=workers, rules=rules)
            continue
        hints = typing.get_type_hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            if (section, f.name) == ("fetch", "hosts"):
                values[f.name] = build_host_rules(table.get("hosts", []), source)
                continue
            values[f.name] = _check_value(source, section, f.name, table.get(f.name), hints[f.name])
        sections[section] = cls(**values)
    settings = Settings(**sections, source=source)
    for pattern_key in ("allow", "deny"):
        for i, pattern in enumerate(getattr(settings.crawl, pattern_key)):
            compile_regex(pattern, f"{source}: [crawl] {pattern_key}[{i}]")
    if settings.state.backend == "redis":
        for i, rule in enumerate(settings.fetch.hosts):
            if rule.concurrency is not None:
                raise UsageError(f'{source}: [[fetch.hosts]] #{i + 1} (match = "{rule.match}"): concurrency: '
                                 'not supported with [state] backend = "redis" (per_host_concurrency applies)')
    if settings.output.warc and os.path.abspath(settings.output.warc) == os.path.abspath(settings.output.path):
        raise UsageError(f"{source}: [output] warc: {settings.output.warc!r} is the JSON-lines output itself")
    return settings


def _type_name(tp: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if typing.get_origin(tp) is list:
        (inner,) = typing.get_args(tp)
        return f"a list of {names[inner].split(' ', 1)[1]}s"
    return names[tp]


def _is_type(value: Any, tp: Any) -> bool:
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if typing.get_origin(tp) is list:
        (inner,) = typing.get_args(tp)
        return isinstance(value, list) and all(_is_type(v, inner) for v in value)
    raise TypeError(tp)


def _check_value(source: str, section: str, key: str, value: Any, tp: Any) -> Any:
    where = f"{source}: [{section}] {key}"
    if value is None:
        raise UsageError(f"{where}: missing")
    if not _is_type(value, tp):
        raise UsageError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if tp is float:
        value = float(value)
    check = CHECKS.get((section, key))
    if check and not check[0](value):
        raise UsageError(f"{where}: must be {check[1]}, got {value!r}")
    return value
