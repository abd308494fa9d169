"""Rules that span keys: what each value alone cannot say (listeners, URLs, token length)."""

from __future__ import annotations

from urllib.parse import urlsplit

from bridge.config.errors import ConfigError
from bridge.config.sections import Config


def parse_hostport(text: str, where: str) -> tuple[str, int]:
    """Split `HOST:PORT` (or `[v6]:PORT`) into its parts, checking the port."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ConfigError(f"{where}: expected HOST:PORT, got {text!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ConfigError(f"{where}: port {port} out of range in {text!r}")
    return host.strip("[]") or "0.0.0.0", port


def check_combinations(config: Config) -> list[str]:
    """Every cross-key problem of a config whose keys are each valid."""
    problems: list[str] = []
    server, upstream, writes = config.server, config.upstream, config.writes
    if not server.listen and not server.listen_tls:
        problems.append("server.listen: at least one address is needed")
    for where, items in (
        ("server.listen", server.listen),
        ("server.listen_tls", server.listen_tls),
        ("server.listen_ws", server.listen_ws),
    ):
        for item in items:
            try:
                parse_hostport(item, where)
            except ConfigError as problem:
                problems.extend(problem.problems)
    if bool(server.tls_cert) != bool(server.tls_key):
        problems.append("server.tls_cert: tls_cert and tls_key must be given together")
    if upstream.url != "auto":
        problems.extend(_url_problems(upstream.url))
    if upstream.ws_url not in ("", "off") and not upstream.ws_url.startswith(("ws://", "wss://")):
        problems.append(
            f"upstream.ws_url: expected ws://HOST:PORT/, off or empty; got {upstream.ws_url!r}"
        )
    mqtt = config.mqtt.url
    if mqtt and (urlsplit(mqtt).scheme not in ("mqtt", "mqtts") or not urlsplit(mqtt).hostname):
        problems.append(
            "mqtt.url: expected mqtt://[user:pass@]HOST[:PORT] or mqtts://..., or empty"
        )
    if upstream.backoff_max < upstream.backoff_initial:
        problems.append("upstream.backoff_max: must be at least upstream.backoff_initial")
    if writes.enabled and len(writes.token) < 16:
        problems.append("writes.token: writes are enabled, so a token of 16+ characters is needed")
    for origin in (*config.cors.origins, *config.cors.api_origins):
        if origin not in {"*", "null"} and "://" not in origin:
            problems.append(f"cors.origins: {origin!r} is not '*', 'null' or scheme://host")
    return problems


def _url_problems(url: str) -> list[str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [f"upstream.url: expected http(s)://HOST[:PORT] or auto, got {url!r}"]
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return [f"upstream.url: give only scheme, host and port, got {url!r}"]
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return [f"upstream.url: bad port in {url!r}"]
    return []
