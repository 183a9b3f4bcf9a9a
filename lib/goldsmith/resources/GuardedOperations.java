package goldsmith.sql;

import java.lang.reflect.Field;
import java.util.ArrayList;
import java.util.List;

import org.apache.hive.service.Service;
import org.apache.hive.service.cli.CLIService;
import org.apache.hive.service.cli.HiveSQLException;
import org.apache.hive.service.cli.RowSet;
import org.apache.hive.service.cli.operation.GetColumnsOperation;
import org.apache.hive.service.cli.operation.GetSchemasOperation;
import org.apache.hive.service.cli.operation.MetadataOperation;
import org.apache.hive.service.cli.operation.OperationManager;
import org.apache.hive.service.cli.session.HiveSession;
import org.apache.hive.service.cli.session.SessionManager;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.hive.thriftserver.HiveThriftServer2;
import org.apache.spark.sql.hive.thriftserver.SparkGetColumnsOperation;
import org.apache.spark.sql.hive.thriftserver.SparkGetSchemasOperation;
import org.apache.spark.sql.hive.thriftserver.SparkGetTablesOperation;
import org.apache.spark.sql.hive.thriftserver.SparkSQLSessionManager;
import org.apache.spark.sql.hive.thriftserver.server.SparkSQLOperationManager;

/**
 * The JDBC metadata calls of `goldsmith serve-sql` (getTables, getColumns, getSchemas; beeline's {@code !tables})
 * answered like Spark answers them, then cut to what the user's grants name, as {@link Guard} cuts SHOW TABLES.
 * {@link #install} puts it in place of Spark's operation manager in a started server.
 */
public final class GuardedOperations extends SparkSQLOperationManager {

  /**
   * Spark's manager takes Hive's map of operations by reflection on its direct superclass, which for a subclass
   * is Spark's class itself: the map is set here from Hive's field instead.
   */
  public GuardedOperations() throws ReflectiveOperationException {
    Field hive = OperationManager.class.getDeclaredField("handleToOperation");
    Field spark = SparkSQLOperationManager.class.getDeclaredField("handleToOperation");
    hive.setAccessible(true);
    spark.setAccessible(true);
    spark.set(this, hive.get(this));
  }

  @Override
  public synchronized MetadataOperation newGetTablesOperation(HiveSession parent, String catalog, String schema,
      String table, List<String> types) {
    return register(new Tables(session(parent), parent, catalog, schema, table, types));
  }

  @Override
  public synchronized GetColumnsOperation newGetColumnsOperation(HiveSession parent, String catalog,
      String schema, String table, String column) {
    return register(new Columns(session(parent), parent, catalog, schema, table, column));
  }

  @Override
  public synchronized GetSchemasOperation newGetSchemasOperation(HiveSession parent, String catalog,
      String schema) {
    return register(new Schemas(session(parent), parent, catalog, schema));
  }

  private SparkSession session(HiveSession parent) {
    SparkSession session = sessionToContexts().get(parent.getSessionHandle());
    if (session == null) {
      throw new IllegalStateException("goldsmith serve-sql: no session for " + parent.getSessionHandle());
    }
    return session;
  }

  private <T extends MetadataOperation> T register(T operation) {
    handleToOperation().put(operation.getHandle(), operation);
    return operation;
  }

  /** Keeps the rows of `rows` whose layer (column `layerAt`) and table (`tableAt`, -1: none) `user` may read. */
  static void keep(RowSet rows, String user, int layerAt, int tableAt) {
    List<String> grants = Guard.grants(user);
    // Copied out first: a column-based set's extracted subset shares its lists with the set.
    List<Object[]> all = new ArrayList<>();
    for (Object[] row : rows.extractSubset(rows.numRows())) {
      all.add(row.clone());
    }
    for (Object[] row : all) {
      String layer = String.valueOf(row[layerAt]);
      boolean granted = tableAt < 0 ? Guard.grantedIn(grants, layer)
          : Guard.granted(grants, layer, String.valueOf(row[tableAt]));
      if (granted) {
        rows.addRow(row);
      }
    }
  }

  static final class Tables extends SparkGetTablesOperation {
    Tables(SparkSession session, HiveSession parent, String catalog, String schema, String table,
        List<String> types) {
      super(session, parent, catalog, schema, table, types);
    }

    @Override
    public void runInternal() {
      super.runInternal();
      keep(rowSet, getParentSession().getUserName(), 1, 2);  // TABLE_SCHEM, TABLE_NAME
    }
  }

  static final class Columns extends SparkGetColumnsOperation {
    Columns(SparkSession session, HiveSession parent, String catalog, String schema, String table, String column) {
      super(session, parent, catalog, schema, table, column);
    }

    @Override
    public void runInternal() {
      super.runInternal();
      keep(rowSet, getParentSession().getUserName(), 1, 2);  // TABLE_SCHEM, TABLE_NAME
    }
  }

  static final class Schemas extends SparkGetSchemasOperation {
    Schemas(SparkSession session, HiveSession parent, String catalog, String schema) {
      super(session, parent, catalog, schema);
    }

    @Override
    public void runInternal() {
      super.runInternal();
      keep(rowSet, getParentSession().getUserName(), 0, -1);  // TABLE_SCHEM
    }
  }

  /** Replaces the operation manager of the started `server`'s session manager with a guarded one. */
  public static void install(HiveThriftServer2 server) throws ReflectiveOperationException {
    for (Service service : server.getServices()) {
      if (!(service instanceof CLIService)) {
        continue;
      }
      SessionManager sessions = ((CLIService) service).getSessionManager();
      Field hive = SessionManager.class.getDeclaredField("operationManager");
      Field spark = SparkSQLSessionManager.class.getDeclaredField("sparkSqlOperationManager");
      hive.setAccessible(true);
      spark.setAccessible(true);
      SparkSQLOperationManager old = (SparkSQLOperationManager) hive.get(sessions);
      GuardedOperations guarded = new GuardedOperations();
      guarded.init(old.getHiveConf());
      guarded.start();
      synchronized (old) {
        guarded.sessionToContexts().putAll(old.sessionToContexts());
        guarded.handleToOperation().putAll(old.handleToOperation());
        hive.set(sessions, guarded);
        spark.set(sessions, guarded);
      }
      return;
    }
    throw new IllegalStateException("goldsmith serve-sql: the Thrift server has no CLI service");
  }
}
