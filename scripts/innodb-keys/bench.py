#!/usr/bin/env python3
"""Measures how the primary-key choice shapes an InnoDB table.

Loads the same rows into four tables that differ only in their primary key (auto-increment BIGINT,
random UUIDv4, time-ordered UUIDv7, natural (merchant_id, txn_date, seq)) and records insert
throughput, index sizes, page splits, buffer-pool traffic and a per-merchant range scan. The server is
restarted before every load and every cold scan, so each measurement starts from an empty buffer pool.

Run through ./run, which installs the packages, makes the work directory and draws the chart.
"""

import argparse
import datetime
import json
import os
import pathlib
import subprocess
import time

import pymysql

HERE = pathlib.Path(__file__).resolve().parent

# (name shown in the results, table, SQL expression that gives the id column, or None)
VARIANTS = [
    ("auto-increment BIGINT", "t_autoinc", None),
    ("UUIDv4 BINARY(16)", "t_uuid4", "u4"),
    ("UUIDv7 BINARY(16)", "t_uuid7", "u7"),
    ("natural (merchant_id, txn_date, seq)", "t_natural", None),
]
PAYLOAD_COLUMNS = "merchant_id, txn_date, seq, created_at, amount_minor, currency, status, reference"
STATUS_COUNTERS = [
    "Innodb_buffer_pool_read_requests",  # logical page reads
    "Innodb_buffer_pool_reads",  # page reads that missed the pool and went to disk
    "Innodb_buffer_pool_pages_flushed",  # dirty pages written back
    "Innodb_data_written",  # bytes written to data files (incl. doublewrite)
]
# Off by default; enabled on every start (innodb_monitor_enable accepts a trailing wildcard).
MONITOR_PATTERN = "index_page_%"
LOAD_CHUNK_ROWS = 10_000
DAYS = 30
SCAN_MERCHANTS = 200
SCAN_FIRST_DAY = 8  # a 7-day window in the middle of the month
SCAN_DAYS = 7
EPOCH = datetime.datetime(2025, 1, 1)

# UUID builders, kept as stored functions so each row calls RANDOM_BYTES exactly once.
# The bit layouts follow RFC 9562: version nibble in byte 6, variant bits 10 in byte 8; v7 starts
# with the 48-bit Unix time in milliseconds, big-endian, which is what makes it time-ordered.
UUID_FUNCTIONS = [
    """CREATE FUNCTION uuid_v4() RETURNS BINARY(16) NOT DETERMINISTIC NO SQL
       BEGIN
         DECLARE r BINARY(16) DEFAULT RANDOM_BYTES(16);
         RETURN CONCAT(LEFT(r, 6), CHAR(0x40 | (ASCII(SUBSTR(r, 7, 1)) & 0x0F)), SUBSTR(r, 8, 1),
                       CHAR(0x80 | (ASCII(SUBSTR(r, 9, 1)) & 0x3F)), SUBSTR(r, 10));
       END""",
    """CREATE FUNCTION uuid_v7(ts DATETIME(6)) RETURNS BINARY(16) NOT DETERMINISTIC NO SQL
       BEGIN
         DECLARE r BINARY(10) DEFAULT RANDOM_BYTES(10);
         RETURN CONCAT(UNHEX(LPAD(HEX(FLOOR(UNIX_TIMESTAMP(ts) * 1000)), 12, '0')),
                       CHAR(0x70 | (ASCII(LEFT(r, 1)) & 0x0F)), SUBSTR(r, 2, 1),
                       CHAR(0x80 | (ASCII(SUBSTR(r, 3, 1)) & 0x3F)), SUBSTR(r, 4, 7));
       END""",
]


class Server:
    """One mariadbd process on a private datadir, socket and loopback port; stopped only by its PID."""

    def __init__(self, workdir, port, buffer_pool_mb, run_as):
        self.datadir = workdir / "data"
        self.socket = workdir / "mariadb.sock"
        self.pidfile = workdir / "mariadbd.pid"
        self.errlog = workdir / "error.log"
        self.port = port
        self.buffer_pool_mb = buffer_pool_mb
        self.run_as = run_as
        self.process = None

    def install(self):
        cmd = ["mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}",
               "--auth-root-authentication-method=normal", "--skip-test-db"]
        if self.run_as:
            cmd.append(f"--user={self.run_as}")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)

    def start(self):
        cmd = [
            "mariadbd", "--no-defaults",
            f"--datadir={self.datadir}", f"--socket={self.socket}", f"--pid-file={self.pidfile}",
            f"--log-error={self.errlog}", "--bind-address=127.0.0.1", f"--port={self.port}",
            "--skip-name-resolve", "--max-connections=20", "--table-open-cache=400",
            f"--innodb-buffer-pool-size={self.buffer_pool_mb}M",
            "--innodb-log-file-size=256M",
            # Cold starts: never reload the previous run's pages.
            "--innodb-buffer-pool-load-at-startup=OFF", "--innodb-buffer-pool-dump-at-shutdown=OFF",
            "--innodb-stats-auto-recalc=OFF",
        ]
        if self.run_as:
            cmd.append(f"--user={self.run_as}")
        self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mariadbd exited with {self.process.returncode}; see {self.errlog}")
            try:
                conn = self.connect()
                break
            except pymysql.err.OperationalError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"mariadbd did not accept connections within 60s; see {self.errlog}")
        with conn.cursor() as cur:
            cur.execute("SET GLOBAL innodb_monitor_enable = %s", (MONITOR_PATTERN,))
        return conn

    def connect(self):
        return pymysql.connect(unix_socket=str(self.socket), user="root", autocommit=True,
                               init_command="SET time_zone = '+00:00'")

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # SIGTERM to our own PID: a clean InnoDB shutdown
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def cpu_seconds(self):
        """User + system CPU time the server has used so far (all its threads), from /proc."""
        stat = pathlib.Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()  # the command name may contain spaces
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    def restart(self):
        self.stop()
        return self.start()


def query(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def status(conn):
    rows = query(conn, "SHOW GLOBAL STATUS WHERE Variable_name IN %s", (STATUS_COUNTERS,))
    return {name: int(value) for name, value in rows}


def monitors(conn):
    rows = query(conn, "SELECT name, count FROM information_schema.INNODB_METRICS "
                       "WHERE name LIKE %s", (MONITOR_PATTERN,))
    return {name: int(count) for name, count in rows}


def delta(after, before):
    return {key: after[key] - before.get(key, 0) for key in after}


def create_schema(conn, db, rows, merchants):
    query(conn, f"CREATE DATABASE {db}")
    query(conn, f"USE {db}")
    schema = "\n".join(line for line in (HERE / "schema.sql").read_text().splitlines()
                       if not line.lstrip().startswith("--"))
    for statement in schema.split(";"):
        if statement.strip():
            query(conn, statement)
    # Staging lives outside InnoDB (MyISAM) so reading it never touches the buffer pool we measure.
    query(conn, "ALTER TABLE staging ENGINE=MyISAM")
    for function in UUID_FUNCTIONS:
        query(conn, function)
    span_us = DAYS * 86_400 * 1_000_000
    # Rows arrive in time order; each belongs to a pseudo-random merchant, and seq numbers a
    # merchant's transactions within the day, as a ledger would.
    query(conn, f"""
        INSERT INTO staging
        SELECT i, merchant_id, txn_date,
               ROW_NUMBER() OVER (PARTITION BY merchant_id, txn_date ORDER BY i),
               created_at, 100 + MOD(CRC32(CONCAT('a', i)), 1000000), ELT(1 + MOD(i, 3), 'NGN', 'USD', 'GBP'),
               MOD(i, 4), LEFT(MD5(i), 20), uuid_v4(), uuid_v7(created_at)
        FROM (SELECT seq AS i, 1 + MOD(CRC32(CONCAT('m', seq)), {merchants}) AS merchant_id,
                     %s + INTERVAL (seq * {span_us} DIV {rows}) MICROSECOND AS created_at,
                     DATE(%s + INTERVAL (seq * {span_us} DIV {rows}) MICROSECOND) AS txn_date
              FROM seq_1_to_{rows}) AS generated
        ORDER BY i""", (EPOCH, EPOCH))


def check_staging(conn, rows):
    """Fails the run if the generated ids are not what the tables claim to hold."""
    checks = {
        "row count": f"SELECT COUNT(*) <> {rows} FROM staging",
        "UUIDv4 version/variant bits": (
            "SELECT COUNT(*) FROM staging WHERE ASCII(SUBSTR(u4, 7, 1)) >> 4 <> 4 "
            "OR ASCII(SUBSTR(u4, 9, 1)) >> 6 <> 2"),
        "UUIDv7 version/variant bits": (
            "SELECT COUNT(*) FROM staging WHERE ASCII(SUBSTR(u7, 7, 1)) >> 4 <> 7 "
            "OR ASCII(SUBSTR(u7, 9, 1)) >> 6 <> 2"),
        # Rows are spaced further apart than a millisecond, so UUIDv7 must rise with arrival order.
        "UUIDv7 time order": (
            "SELECT COUNT(*) FROM staging a JOIN staging b ON b.i = a.i + 1 WHERE b.u7 <= a.u7"),
        "unique ids": ("SELECT COUNT(DISTINCT u4) <> COUNT(*) OR COUNT(DISTINCT u7) <> COUNT(*) "
                       "FROM staging"),
    }
    for name, sql in checks.items():
        if int(query(conn, sql)[0][0]) != 0:
            raise RuntimeError(f"generated data fails its self-check: {name}")


def load(conn, table, id_expr, rows):
    columns = PAYLOAD_COLUMNS if id_expr is None else f"id, {PAYLOAD_COLUMNS}"
    select = PAYLOAD_COLUMNS if id_expr is None else f"{id_expr}, {PAYLOAD_COLUMNS}"
    sql = (f"INSERT INTO {table} ({columns}) SELECT {select} FROM staging "
           "WHERE i BETWEEN %s AND %s ORDER BY i")
    started = time.monotonic()
    for first in range(1, rows + 1, LOAD_CHUNK_ROWS):
        query(conn, sql, (first, min(first + LOAD_CHUNK_ROWS - 1, rows)))  # one commit per chunk
    return time.monotonic() - started


def index_sizes(conn, db, table):
    query(conn, f"ANALYZE TABLE {table} PERSISTENT FOR ALL")
    rows = query(conn, "SELECT index_name, stat_name, stat_value FROM mysql.innodb_index_stats "
                       "WHERE database_name = %s AND table_name = %s "
                       "AND stat_name IN ('size', 'n_leaf_pages')", (db, table))
    page_size = int(query(conn, "SELECT @@innodb_page_size")[0][0])
    sizes = {}
    for index, stat, value in rows:
        sizes.setdefault(index, {})[stat] = int(value)
    return {index: {"bytes": s["size"] * page_size, "leaf_pages": s["n_leaf_pages"]}
            for index, s in sizes.items()}


def scan_merchants(merchants):
    # 7919 is prime, so these are distinct merchants whenever merchants isn't a multiple of it.
    return [1 + (k * 7919) % merchants for k in range(min(SCAN_MERCHANTS, merchants))]


def range_scan(conn, table, merchant_ids):
    first = (EPOCH + datetime.timedelta(days=SCAN_FIRST_DAY - 1)).date()
    last = first + datetime.timedelta(days=SCAN_DAYS - 1)
    sql = (f"SELECT COUNT(*), SUM(amount_minor) FROM {table} "
           "WHERE merchant_id = %s AND txn_date BETWEEN %s AND %s")
    plan = query(conn, "EXPLAIN " + sql, (merchant_ids[0], first, last))[0]
    before = status(conn)
    started = time.monotonic()
    found = 0
    for merchant in merchant_ids:
        found += int(query(conn, sql, (merchant, first, last))[0][0])
    elapsed = time.monotonic() - started
    return {"seconds": elapsed, "rows": found, "index_used": plan[5],
            "status": delta(status(conn), before)}


def mib(n_bytes):
    return n_bytes / 2**20


def render_markdown(result):
    cfg = result["config"]
    n_rows, n_scans = cfg["rows"], cfg["scan_merchants"]
    lines = [
        "# InnoDB primary-key experiment: results",
        "",
        f"MariaDB {cfg['server_version']}; the same {n_rows:,} rows loaded into each table in time "
        f"order ({cfg['merchants']:,} merchants, {DAYS} days); buffer pool {cfg['buffer_pool_mb']} MiB; "
        f"16 KiB pages; {LOAD_CHUNK_ROWS:,} rows per INSERT…SELECT and "
        f"commit; server restarted (cold pool) before each load and each cold scan. Run on {cfg['date']} "
        f"on {cfg['host_cpus']} CPUs shared with other work, so throughput and milliseconds are noisy; "
        "sizes and page splits are not. Rerun: `scripts/innodb-keys/run`.",
        "",
        "**Size** (`mysql.innodb_index_stats` after `ANALYZE TABLE`)",
        "",
        "| primary key | clustered index MiB | rows per leaf page | `ix_created_at` MiB | "
        "unique (merchant_id, txn_date, seq) MiB | total MiB |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for v in result["variants"]:
        idx = v["indexes"]
        natural_uk = idx.get("uk_merchant_day_seq", {}).get("bytes")
        lines.append(
            f"| {v['name']} | {mib(idx['PRIMARY']['bytes']):.1f} | "
            f"{n_rows / idx['PRIMARY']['leaf_pages']:.0f} | {mib(idx['ix_created_at']['bytes']):.1f} | "
            f"{'none needed: it is the PK' if natural_uk is None else f'{mib(natural_uk):.1f}'} | "
            f"{mib(sum(i['bytes'] for i in idx.values())):.1f} |")
    lines += [
        "",
        "**Load** (deltas over the whole load; splits from `INNODB_METRICS`, the rest from "
        "`SHOW GLOBAL STATUS`)",
        "",
        "| primary key | insert rows/s | server CPU s | page splits (all indexes) | buffer-pool misses "
        "(`Innodb_buffer_pool_reads`) | pages flushed | MiB written to data files |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for v in result["variants"]:
        st = v["load_status"]
        lines.append(
            f"| {v['name']} | {v['rows_per_second']:,.0f} | {v['load_server_cpu_seconds']:.1f} | "
            f"{v['monitors'].get('index_page_splits', 0):,} | "
            f"{st['Innodb_buffer_pool_reads']:,} | {st['Innodb_buffer_pool_pages_flushed']:,} | "
            f"{mib(st['Innodb_data_written']):,.0f} |")
    lines += [
        "",
        f"**Range scan**: `COUNT(*), SUM(amount_minor)` for one merchant over {SCAN_DAYS} days, for "
        f"{n_scans} different merchants; first on a cold pool, then the same queries again.",
        "",
        "| primary key | index used | rows (all queries) | logical page reads per query | "
        "cold: disk reads per query | cold ms per query | second pass: disk reads per query | "
        "second pass ms per query |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for v in result["variants"]:
        cold, warm = v["scan_cold"], v["scan_warm"]
        lines.append(
            f"| {v['name']} | `{cold['index_used']}` | {cold['rows']:,} | "
            f"{warm['status']['Innodb_buffer_pool_read_requests'] / n_scans:.1f} | "
            f"{cold['status']['Innodb_buffer_pool_reads'] / n_scans:.1f} | "
            f"{1000 * cold['seconds'] / n_scans:.2f} | "
            f"{warm['status']['Innodb_buffer_pool_reads'] / n_scans:.1f} | "
            f"{1000 * warm['seconds'] / n_scans:.2f} |")
    lines += [
        "",
        "Page splits are `index_page_splits` from `information_schema.INNODB_METRICS` (enabled with "
        "`SET GLOBAL innodb_monitor_enable = 'index_page_%'`); InnoDB counts an append to the "
        "right-most page as a split too, so compare the fill (rows per leaf page) as well. Pages "
        "flushed is `Innodb_buffer_pool_pages_flushed`; logical reads are "
        "`Innodb_buffer_pool_read_requests`.",
        "",
        "![chart](results.png)",
        "",
    ]
    return "\n".join(lines)


def render_chart_data(result):
    """Whitespace-separated table for chart.gp: one row per variant."""
    lines = ["# label rows_per_s total_mib page_splits_k pool_misses_k cold_scan_reads_per_query "
             "server_cpu_s mib_written"]
    for v in result["variants"]:
        total = sum(i["bytes"] for i in v["indexes"].values())
        label = v["table"].removeprefix("t_")
        lines.append(f'"{label}" {v["rows_per_second"]:.0f} {mib(total):.1f} '
                     f'{v["monitors"].get("index_page_splits", 0) / 1000:.1f} '
                     f'{v["load_status"]["Innodb_buffer_pool_reads"] / 1000:.1f} '
                     f'{v["scan_cold"]["status"]["Innodb_buffer_pool_reads"] / result["config"]["scan_merchants"]:.2f} '
                     f'{v["load_server_cpu_seconds"]:.1f} {mib(v["load_status"]["Innodb_data_written"]):.0f}')
    return "\n".join(lines) + "\n"


def run(args):
    server = Server(args.workdir, args.port, args.buffer_pool_mb, args.run_as)
    server.install()
    db = "innodb_keys"
    try:
        conn = server.start()
        version = query(conn, "SELECT VERSION()")[0][0]
        print(f"creating {args.rows:,} staging rows", flush=True)
        create_schema(conn, db, args.rows, args.merchants)
        check_staging(conn, args.rows)
        variants = []
        for name, table, id_expr in VARIANTS:
            conn = server.restart()
            query(conn, f"USE {db}")
            before_status, before_monitors = status(conn), monitors(conn)
            before_cpu = server.cpu_seconds()
            seconds = load(conn, table, id_expr, args.rows)
            variant = {
                "name": name, "table": table, "load_seconds": seconds,
                "load_server_cpu_seconds": server.cpu_seconds() - before_cpu,
                "rows_per_second": args.rows / seconds,
                "load_status": delta(status(conn), before_status),
                "monitors": delta(monitors(conn), before_monitors),
            }
            variant["indexes"] = index_sizes(conn, db, table)
            print(f"loaded {table}: {variant['rows_per_second']:,.0f} rows/s, "
                  f"{variant['monitors'].get('index_page_splits', 0):,} page splits", flush=True)
            variants.append(variant)
        merchants = scan_merchants(args.merchants)
        for variant in variants:
            conn = server.restart()
            query(conn, f"USE {db}")
            variant["scan_cold"] = range_scan(conn, variant["table"], merchants)
            variant["scan_warm"] = range_scan(conn, variant["table"], merchants)
        counts = {v["scan_cold"]["rows"] for v in variants}
        if len(counts) != 1:
            raise RuntimeError(f"range scans disagree on the row count: {counts}")
    finally:
        server.stop()
    return {
        "config": {"rows": args.rows, "merchants": args.merchants, "buffer_pool_mb": args.buffer_pool_mb,
                   "scan_merchants": len(merchants), "server_version": version,
                   "date": datetime.date.today().isoformat(), "host_cpus": len(os.sched_getaffinity(0))},
        "variants": variants,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=pathlib.Path, required=True, help="empty directory for the datadir")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="directory for results.*")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--merchants", type=int, default=5_000)
    parser.add_argument("--buffer-pool-mb", type=int, default=64)
    parser.add_argument("--port", type=int, default=33306)
    parser.add_argument("--run-as", default="", help="OS user for mariadbd when started as root")
    args = parser.parse_args()
    if args.rows < 1000 or args.merchants < 1 or args.buffer_pool_mb < 8:
        parser.error("need --rows >= 1000, --merchants >= 1, --buffer-pool-mb >= 8")
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "results.md").write_text(render_markdown(result))
    (args.out / "results.dat").write_text(render_chart_data(result))


if __name__ == "__main__":
    main()
