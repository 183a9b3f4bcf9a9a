"""The `goldsmith` command: run, watch, report, validate, sql, serve-sql, models, demo-data."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from goldsmith import __version__
from goldsmith.errors import ConfigError, GoldsmithError
from goldsmith.io import object_store
from goldsmith.io.paths import storage_root  # in io.paths: models_cli needs it too, without importing cli
from goldsmith.io.tables import TableRef

if TYPE_CHECKING:
    from goldsmith.jobs.context import RunContext

log = logging.getLogger("goldsmith")


def _add_pipeline_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipeline", type=Path, help="the pipeline YAML file, e.g. conf/pipelines/flights.yml")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override any value, e.g. --set sources.flights.path=/data/landing/flights (repeatable)",
    )
    parser.add_argument("--env", default=None, help="environment overlay: local (default), cluster, or a .yml path")


def _add_wait_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait", nargs="?", type=float, const=-1.0, default=0.0, metavar="SECONDS",
        help="when another run of the pipeline is writing the same storage root, wait for it (as long as it takes, "
             "or at most SECONDS) instead of exiting with code 4",
    )


def _wait_seconds(value: float) -> float | None:
    """--wait: 0 (not given) refuses at once, a negative value (given bare) waits as long as it takes."""
    return None if value < 0 else value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="goldsmith", description=__doc__)
    parser.add_argument("--version", action="version", version=f"goldsmith {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a pipeline's stages in one Spark application")
    _add_pipeline_args(run)
    run.add_argument("--stages", default=None,
                     help="comma-separated subset of ingest,refine,features,profile,train,score,monitor")
    _add_wait_arg(run)

    watch = sub.add_parser(
        "watch", help="run a pipeline now and again whenever its landing files, settings or SQL change, in one "
                      "warm Spark application (no JVM start per run)",
    )
    _add_pipeline_args(watch)
    watch.add_argument("--stages", default=None, help="the stages of every run (default: all)")
    watch.add_argument("--interval", type=float, default=10.0, metavar="SECONDS",
                       help="seconds between looks at the landing folders (default 10)")
    watch.add_argument("--max-runs", type=int, default=None, metavar="N",
                       help="stop after N runs (default: until Ctrl-C); the exit code is the last run's")
    _add_wait_arg(watch)

    report = sub.add_parser(
        "report", help="write one self-contained HTML file: lineage, profiles, models, bias, slices, drift"
    )
    _add_pipeline_args(report)
    report.add_argument("--output", type=Path, default=None,
                        help="the HTML file (default: <storage root>/_reports/<pipeline>.html)")
    report.add_argument("--check", action="store_true",
                        help="open it in headless Chromium, check every section renders, save a screenshot beside it")

    validate = sub.add_parser("validate", help="check a pipeline's config and SQL without running it")
    _add_pipeline_args(validate)

    sql = sub.add_parser("sql", help="query the lakehouse catalog")
    sql.add_argument("query", help='e.g. "select count(*) from silver.flights"')
    sql.add_argument("--root", default=None, help="storage root (default: $GOLDSMITH_ROOT or ./lakehouse)")
    sql.add_argument("--format", choices=("table", "csv", "json"), default="table")
    sql.add_argument("--limit", type=int, default=None, metavar="N",
                     help="print at most N rows, in any format (default: csv and json write every row, the table "
                          "view shows 1000); when rows are left out, stderr says so")

    serve = sub.add_parser(
        "serve-sql", help="serve the lakehouse's tables over JDBC/ODBC (Spark Thrift server), read-only by default"
    )
    serve.add_argument("--root", default=None, help="storage root (default: $GOLDSMITH_ROOT or ./lakehouse)")
    serve.add_argument("--port", type=int, default=10000, help="the Thrift port (default 10000)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    serve.add_argument("--writable", action="store_true",
                       help="allow statements that write or change the catalog (default: refused)")
    serve.add_argument("--refresh-seconds", type=float, default=10.0,
                       help="how often tables created by pipelines are picked up (default 10)")
    serve.add_argument("--audit-seconds", type=float, default=60.0,
                       help="how often the audit log's new lines are appended to ops.sql_audit, in one commit "
                            "(default 60; the rest as the server stops)")
    serve.add_argument("--users", default=None, metavar="FILE",
                       help="the users file (default: <root>/_sql/users.json, made by `serve-sql users add`)")
    serve.add_argument("--no-auth", action="store_true",
                       help="no login (loopback only): everyone reads what --open-grant names")
    serve.add_argument("--open-grant", action="append", default=None, metavar="GRANT",
                       help="with --no-auth, what everyone may read (repeatable; default: gold)")
    serve.add_argument("--tls-keystore", default=None, metavar="FILE",
                       help="serve JDBC over TLS with this keystore (its password in $GOLDSMITH_SQL_KEYSTORE_PASSWORD)")
    serve.add_argument("--query-timeout", type=int, default=300, metavar="SECONDS",
                       help="cancel a statement after this long (default 300; 0: never)")
    serve.add_argument("--max-sessions", type=int, default=32, metavar="N",
                       help="connections served at once (default 32)")
    serve.add_argument("--max-rows", type=int, default=1_000_000, metavar="N",
                       help="a query whose result has more rows fails with a message (default 1000000; 0: no cap)")
    serve.add_argument("--ldap-url", default=None, metavar="URL",
                       help="check passwords against this directory (ldap://HOST:PORT or ldaps://...); grants still "
                            "come from the users file (gold for a user it does not list)")
    serve.add_argument("--ldap-user-dn", default=None, metavar="PATTERN",
                       help="the DN a user binds as, e.g. 'uid={user},ou=people,dc=example,dc=org'")
    serve_sub = serve.add_subparsers(dest="serve_command", required=False, metavar="users")
    users = serve_sub.add_parser("users", help="add, remove, list the users of the SQL server and their grants")
    users_sub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    for action, text in (("add", "add a user, or set a user's password (read from a prompt or stdin)"),
                         ("remove", "remove a user"), ("list", "list users and their grants"),
                         ("grant", "give a user more layers or tables"), ("revoke", "take grants back")):
        cmd = users_sub.add_parser(action, help=text)
        if action != "list":
            cmd.add_argument("name", help="the user name")
        if action in ("add", "grant", "revoke"):
            cmd.add_argument("grants", nargs="*" if action == "add" else "+", metavar="GRANT",
                             help="layer (its tables but quarantine), layer.* (all its tables) or layer.table"
                                  + (" (default: gold)" if action == "add" else ""))
        if action == "add":
            cmd.add_argument("--no-password", action="store_true",
                             help="no password here: the user logs in through the server's --ldap-url directory")
        cmd.add_argument("--root", default=None, help="storage root (default: $GOLDSMITH_ROOT or ./lakehouse)")
        cmd.add_argument("--users", default=None, metavar="FILE",
                         help="the users file (default: <root>/_sql/users.json)")

    models = sub.add_parser("models", help="list registered model versions, promote one, roll back the champion")
    models_sub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    for action, text in (("list", "versions with their aliases and test metrics"),
                         ("promote", "make a version champion (its gates are checked)"),
                         ("rollback", "move champion back to the version it replaced")):
        cmd = models_sub.add_parser(action, help=text)
        cmd.add_argument("name", help="the registered model, e.g. flight_delay")
        if action == "promote":
            cmd.add_argument("version", type=int)
            cmd.add_argument("--force", action="store_true", help="promote even if the gates fail (say why)")
        if action != "list":
            cmd.add_argument("--reason", default="", help="why, recorded in ops.model_promotions")
        cmd.add_argument("--root", default=None, help="storage root (default: $GOLDSMITH_ROOT or ./lakehouse)")

    demo = sub.add_parser("demo-data", help="write an example dataset's landing files")
    demo.add_argument("dataset", choices=("flights", "reviews"))
    demo.add_argument(
        "--dest", default=None,
        help="a folder or an s3a:// URI (uploaded with the AWS_* variables); default: <storage root>/landing "
             "($GOLDSMITH_ROOT or ./lakehouse)"
    )
    demo.add_argument("--limit", type=int, default=None, help="flights only: the first N flights")
    demo.add_argument("--scale", type=int, default=None, metavar="SF",
                      help="flights only: SF years of flights-like data (1 = the real 336,776 flights; a file a month)")
    demo.add_argument("--seed", type=int, default=42, help="with --scale: the seed of the copies' delay jitter")
    return parser


def configure_logging(quiet: bool) -> None:
    """Progress lines on stderr; Spark's own logging is set to errors by the session."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    root = logging.getLogger("goldsmith")
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    root.propagate = False
    logging.getLogger("py4j").setLevel(logging.ERROR)
    # PySpark logs every failed query with its full JVM stack trace; goldsmith reports it in one line.
    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        logging.getLogger(name).disabled = True


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script, the `spark_jobs/` launchers and the bundle's wheel tasks."""
    args = build_parser().parse_args(argv)
    configure_logging(args.quiet)
    try:
        return COMMANDS[args.command](args)
    except GoldsmithError as exc:
        print(f"goldsmith: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("goldsmith: interrupted", file=sys.stderr)
        return 130


def cmd_run(args: argparse.Namespace) -> int:
    from goldsmith.config import load_pipeline
    from goldsmith.jobs.pipeline import parse_stages, run_pipeline

    config = load_pipeline(args.pipeline, args.overrides, args.env)
    stages = parse_stages(args.stages)
    _print_summary(run_pipeline(config, stages, wait=_wait_seconds(args.wait)))
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from goldsmith.config import load_pipeline
    from goldsmith.jobs.pipeline import parse_stages
    from goldsmith.jobs.watch import watch

    if args.interval <= 0:
        raise ConfigError(f"--interval must be more than 0 seconds, got {args.interval:g}")
    if args.max_runs is not None and args.max_runs < 1:
        raise ConfigError(f"--max-runs must be at least 1, got {args.max_runs}")
    stages = parse_stages(args.stages)
    return watch(lambda: load_pipeline(args.pipeline, args.overrides, args.env), stages, args.interval,
                 args.max_runs, wait=_wait_seconds(args.wait))


def _print_summary(ctx: RunContext) -> None:
    config, lakehouse = ctx.config, ctx.lakehouse
    tables = [("bronze", n) for n in config.sources] + [("bronze", f"{n}_quarantine") for n in config.sources]
    tables += [("silver", n) for n in config.silver] + [("silver", f"{n}_quarantine") for n in config.silver]
    tables += [("gold", n) for n in config.gold]
    tables += [(r.layer, r.table) for r in (TableRef.parse(spec.output_table(n)) for n, spec in config.models.items())]
    existing = [(layer, name) for layer, name in tables if lakehouse.exists(layer, name)]
    print(f"\nRun {ctx.run_id} of pipeline '{config.name}' finished. Its tables, under {lakehouse.root}:")
    for layer, name in existing:
        print(f"  {layer}.{name:<32} {lakehouse.location(layer, name)}")
    _print_models(ctx)
    example = next((f"{la}.{n}" for la, n in reversed(existing) if not n.endswith("_quarantine")), None)
    if example:
        root_arg = "" if Path(config.storage.root).resolve() == Path("lakehouse").resolve() else \
            f" --root {config.storage.root}"
        print(f'\nQuery them:  goldsmith sql "select * from {example} limit 5"{root_arg}')


def _print_models(ctx: RunContext) -> None:
    from goldsmith.jobs.monitor import MonitorOutcome
    from goldsmith.jobs.score import ScoreOutcome
    from goldsmith.jobs.train import TrainOutcome

    trained = [m for m in ctx.models if isinstance(m, TrainOutcome)]
    for m in trained:
        if m.status == "skipped":
            print(f"\nModel {m.name}: unchanged since version {m.version}, not retrained")
            continue
        headline = ("roc_auc", "pr_auc", "accuracy", "f1", "macro_f1", "weighted_f1", "log_loss", "rmse", "mae", "r2")
        shown = ", ".join(f"{k} {m.test_metrics[k]:.4f}" for k in headline if k in m.test_metrics)
        print(f"\nModel {m.name} version {m.version} ({m.backend}: {m.winner}) is {m.status}")
        print(f"  test set: {shown}")
        per_class = {k[3:]: v for k, v in m.test_metrics.items() if k.startswith("f1_")}
        if per_class:
            print("  test F1 per class: " + ", ".join(f"{c} {v:.4f}" for c, v in sorted(per_class.items())))
        for reason in m.reasons:
            print(f"  not champion: {reason}")
        for line in m.flagged_slices[:8]:
            print(f"  weak slice: {line}")
        if m.label_issues is not None:
            print(f"  label review: {m.label_issues:,} rows whose label looks wrong -> gold.{m.name}_label_review")
    for m in ctx.models:
        if isinstance(m, ScoreOutcome):
            print(f"\n{m.output}: {m.rows:,} rows scored by {m.name} v{m.version} (champion)")
        if isinstance(m, MonitorOutcome):
            state = f"{len(m.breaches)} violation(s)" if m.breaches else "no violation"
            print(f"\nDrift monitor of {m.name} v{m.version}: {state}" + (f" ({m.action})" if m.action else ""))
            for line in m.breaches[:8]:
                print(f"  {line}")
            if len(m.breaches) > 8:
                print(f"  ... {len(m.breaches) - 8} more in ops.monitor_results")
    tracking = next((m.tracking for m in trained if m.tracking is not None), None)
    if tracking is not None:
        print(f"\nRuns, plots and the registry:  {tracking.ui_command}")


def cmd_report(args: argparse.Namespace) -> int:
    from goldsmith.config import load_pipeline
    from goldsmith.jobs.pipeline import open_lakehouse, session_for
    from goldsmith.report import Tables, write_report

    config = load_pipeline(args.pipeline, args.overrides, args.env)
    # Beside the tables, or in the working folder when they are on an object store (an HTML file for a browser).
    beside = Path("reports") if object_store.is_object_store(config.storage.root) else Path(config.storage.root)
    output = args.output or beside / "_reports" / f"{config.name}.html"
    # A local lakehouse is read without Spark; a catalog or an object store starts it.
    tables = Tables.of_config(config, lambda: open_lakehouse(session_for(config), config, attach=False))
    path = write_report(None, tables, config, output)
    print(f"Report of pipeline '{config.name}': {path.resolve()} ({path.stat().st_size / 1e6:.1f} MB)")
    if args.check:
        from goldsmith.report.browser import check_render

        check = check_render(path, path.with_suffix(".png"))
        print(f"  rendered in headless Chromium: sections {', '.join(check.sections)}; "
              f"{check.broken_images} broken image(s); screenshot {check.screenshot}")
        if not check.ok:
            problems = ([] if check.rendered else ["the page did not finish loading"]) + \
                ([f"{check.broken_images} image(s) did not decode"] if check.broken_images else []) + \
                check.console_errors
            print("goldsmith: error: the report did not render cleanly: " + "; ".join(problems), file=sys.stderr)
            return 1
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from goldsmith.config import load_pipeline
    from goldsmith.validate import parse_sql_files

    config = load_pipeline(args.pipeline, args.overrides, args.env)
    checked = parse_sql_files(config)
    print(f"{args.pipeline}: valid ({len(config.sources)} sources, {len(config.silver)} silver, "
          f"{len(config.gold)} gold tables, {len(config.models)} models; {checked} SQL files parsed)")
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    from goldsmith.io.lakehouse import Lakehouse
    from goldsmith.session import build_session
    from goldsmith.sql import check_output, run_query

    check_output(args.format, args.limit)
    root = storage_root(args.root)
    object_store.check_credentials([root], {})
    spark = build_session("goldsmith-sql", "local[*]")
    lakehouse = Lakehouse(spark, root)
    lakehouse.attach()
    run_query(spark, args.query, args.format, args.limit, sys.stdout, sys.stderr)
    return 0


def cmd_serve_sql(args: argparse.Namespace) -> int:
    if args.serve_command == "users":
        return cmd_sql_users(args)
    from goldsmith.serve import ServeOptions, serve_sql

    root = storage_root(args.root)
    object_store.check_credentials([root], {})
    options = ServeOptions(
        port=args.port, host=args.host, writable=args.writable, refresh_seconds=args.refresh_seconds,
        audit_seconds=args.audit_seconds,
        auth=not args.no_auth, users=args.users, open_grants=tuple(args.open_grant or ("gold",)),
        tls_keystore=args.tls_keystore, query_timeout=args.query_timeout, max_sessions=args.max_sessions,
        max_rows=args.max_rows, ldap_url=args.ldap_url, ldap_user_dn=args.ldap_user_dn,
    )
    return serve_sql(root, options)


def cmd_sql_users(args: argparse.Namespace) -> int:
    from goldsmith import sql_users

    path = sql_users.users_file(storage_root(args.root), args.users)
    action = args.users_command
    if action == "list":
        for name, user in sorted(sql_users.load(path).items()):
            how = "" if user.get("password") else "  (LDAP)"
            print(f"{name:<24} {', '.join(user.get('grants', []))}{how}")
        return 0
    if action == "add":
        password = None if args.no_password else _read_password(args.name)
        sql_users.add_user(path, args.name, password, args.grants)
        grants = sql_users.load(path)[args.name]["grants"]
        print(f"user {args.name} may read {', '.join(grants)} ({path})")
        return 0
    if action == "remove":
        if not sql_users.remove_user(path, args.name):
            print(f"goldsmith: error: no user {args.name!r} in {path}", file=sys.stderr)
            return 1
        print(f"user {args.name} removed ({path})")
        return 0
    add, remove = (args.grants, []) if action == "grant" else ([], args.grants)
    grants = sql_users.change_grants(path, args.name, add, remove)
    print(f"user {args.name} may read {', '.join(grants) or 'nothing'} ({path})")
    return 0


def _read_password(name: str) -> str:
    """The new password: typed twice at a prompt, or the first line of stdin (never from the command line)."""
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != first:
            raise ConfigError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def cmd_models(args: argparse.Namespace) -> int:
    from goldsmith.models_cli import run_models_command

    return run_models_command(args)


def cmd_demo_data(args: argparse.Namespace) -> int:
    from goldsmith.examples import write_landing

    target = args.dest or f"{storage_root(None).rstrip('/')}/landing"
    if object_store.is_object_store(target):
        import tempfile

        object_store.check_credentials([target], {})
        with tempfile.TemporaryDirectory(prefix="goldsmith-demo-data-") as folder:
            args.dest = folder
            cmd_demo_data(args)
            files = sum(1 for path in Path(folder).rglob("*") if path.is_file())
            sent = object_store.upload_folder(Path(folder), target)
        kept = f" ({files - sent} there already, with the same size)" if sent < files else ""
        print(f"uploaded {sent} of {files} file(s) to {target}{kept}")
        return 0
    dest = Path(target)
    if args.scale is not None:
        from goldsmith.scale import write_scaled_flights

        if args.dataset != "flights":
            raise ConfigError("--scale: only the flights dataset has a scale generator")
        for table, rows in write_scaled_flights(dest, args.scale, args.seed, args.limit).items():
            print(f"  {table:<20} {rows:>12,} rows  {dest / table}")
        return 0
    written = write_landing(args.dataset, dest, args.limit)
    for name, path in written.items():
        print(f"  {name:<20} {path}")
    return 0


COMMANDS = {
    "run": cmd_run, "watch": cmd_watch, "report": cmd_report, "validate": cmd_validate, "sql": cmd_sql,
    "serve-sql": cmd_serve_sql, "models": cmd_models,
    "demo-data": cmd_demo_data,
}


if __name__ == "__main__":
    sys.exit(main())
