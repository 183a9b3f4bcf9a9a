package goldsmith.sql;

import java.util.Collections;
import java.util.Set;
import java.util.WeakHashMap;

import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.SparkSessionExtensions;
import org.apache.spark.sql.catalyst.plans.logical.Command;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;

import scala.Function1;
import scala.runtime.AbstractFunction1;
import scala.runtime.BoxedUnit;

/**
 * A Spark SQL extension for `goldsmith serve-sql`: every statement that would write data or change the
 * catalog is refused when it is analysed, before anything runs.
 *
 * <p>Spark's Thrift server has no read-only mode. Queries are logical plans without a {@link Command};
 * writes and DDL (INSERT, MERGE, UPDATE, DELETE, CREATE, DROP, ALTER, OPTIMIZE, VACUUM, CACHE, ...) are all
 * commands. The check allows queries and the commands that only read (SET, USE, SHOW, DESCRIBE, EXPLAIN);
 * any other command is refused, so a command Spark adds later is refused until it is listed here.
 *
 * <p>Enable with {@code spark.sql.extensions=goldsmith.sql.ReadOnlyExtension}. The server's own session, which
 * registers the lakehouse's tables, is exempted with {@link #trust}; sessions of JDBC clients never are.
 */
public final class ReadOnlyExtension extends AbstractFunction1<SparkSessionExtensions, BoxedUnit> {

  /** Commands that read only: by simple class name, so one list serves Spark's v1 and v2 plans and Delta's. */
  static final Set<String> READ_ONLY_COMMANDS = Set.of(
      "SetCommand", "ResetCommand", "SetNamespaceCommand", "SetCatalogAndNamespace", "SetCatalogCommand",
      "ShowTables", "ShowTablesCommand", "ShowTablesExtended", "ShowTableExtended", "ShowNamespaces",
      "ShowNamespacesCommand", "ShowCatalogs", "ShowCatalogsCommand", "ShowCurrentNamespace",
      "ShowCurrentNamespaceCommand", "ShowColumns", "ShowColumnsCommand", "ShowViews", "ShowViewsCommand",
      "ShowFunctions", "ShowFunctionsCommand", "ShowCreateTable", "ShowCreateTableCommand",
      "ShowCreateTableAsSerdeCommand", "ShowTableProperties", "ShowTablePropertiesCommand", "ShowPartitions",
      "ShowPartitionsCommand", "DescribeRelation", "DescribeTableCommand", "DescribeColumn",
      "DescribeColumnCommand", "DescribeNamespace", "DescribeDatabaseCommand", "DescribeFunction",
      "DescribeFunctionCommand", "DescribeQueryCommand", "ExplainCommand", "DescribeDeltaHistory",
      "DescribeDeltaHistoryCommand", "DescribeDeltaDetailCommand");

  private static final Set<SparkSession> TRUSTED = Collections.synchronizedSet(
      Collections.newSetFromMap(new WeakHashMap<>()));

  /** Exempts one session (the server's own, which attaches tables) from the check. */
  public static void trust(SparkSession session) {
    TRUSTED.add(session);
  }

  @Override
  public BoxedUnit apply(SparkSessionExtensions extensions) {
    extensions.injectCheckRule(new AbstractFunction1<SparkSession, Function1<LogicalPlan, BoxedUnit>>() {
      @Override
      public Function1<LogicalPlan, BoxedUnit> apply(SparkSession session) {
        return new Check(session);
      }
    });
    return BoxedUnit.UNIT;
  }

  /** Refuses a plan whose root is a command that is not known to only read. */
  static final class Check extends AbstractFunction1<LogicalPlan, BoxedUnit> {
    private final SparkSession session;

    Check(SparkSession session) {
      this.session = session;
    }

    @Override
    public BoxedUnit apply(LogicalPlan plan) {
      String name = plan.getClass().getSimpleName();
      if (plan instanceof Command && !READ_ONLY_COMMANDS.contains(name) && !TRUSTED.contains(session)) {
        throw new UnsupportedOperationException(
            "goldsmith serve-sql is read-only: " + name + " would change a table or the catalog; "
            + "tables are written by pipeline runs (start the server with --writable to allow it)");
      }
      return BoxedUnit.UNIT;
    }
  }
}
