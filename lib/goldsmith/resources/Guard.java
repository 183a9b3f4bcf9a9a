package goldsmith.sql;

import java.lang.reflect.Method;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.WeakHashMap;
import java.util.concurrent.ConcurrentHashMap;

import org.apache.hive.service.cli.HiveSQLException;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.SparkSessionExtensions;
import org.apache.spark.sql.catalyst.AliasIdentifier;
import org.apache.spark.sql.catalyst.CurrentUserContext;
import org.apache.spark.sql.catalyst.FunctionIdentifier;
import org.apache.spark.sql.catalyst.TableIdentifier;
import org.apache.spark.sql.catalyst.catalog.CatalogTable;
import org.apache.spark.sql.catalyst.expressions.And;
import org.apache.spark.sql.catalyst.expressions.AssertTrue;
import org.apache.spark.sql.catalyst.expressions.Attribute;
import org.apache.spark.sql.catalyst.expressions.EndsWith;
import org.apache.spark.sql.catalyst.expressions.EqualTo;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.expressions.IsNull;
import org.apache.spark.sql.catalyst.expressions.LessThan;
import org.apache.spark.sql.catalyst.expressions.Literal;
import org.apache.spark.sql.catalyst.expressions.MonotonicallyIncreasingID;
import org.apache.spark.sql.catalyst.expressions.Not;
import org.apache.spark.sql.catalyst.expressions.Or;
import org.apache.spark.sql.catalyst.parser.ParameterContext;
import org.apache.spark.sql.catalyst.parser.ParseException;
import org.apache.spark.sql.catalyst.parser.ParserInterface;
import org.apache.spark.sql.catalyst.plans.logical.Command;
import org.apache.spark.sql.catalyst.plans.logical.Filter;
import org.apache.spark.sql.catalyst.plans.logical.Limit;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import org.apache.spark.sql.catalyst.plans.logical.ParsedStatement;
import org.apache.spark.sql.catalyst.rules.Rule;
import org.apache.spark.sql.connector.catalog.Identifier;
import org.apache.spark.sql.execution.QueryExecution;
import org.apache.spark.sql.execution.SparkPlan;
import org.apache.spark.sql.execution.adaptive.AdaptiveSparkPlanExec;
import org.apache.spark.sql.execution.metric.SQLMetric;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.sql.util.QueryExecutionListener;

import scala.Function1;
import scala.Option;
import scala.Tuple2;
import scala.collection.Iterator;
import scala.runtime.AbstractFunction1;
import scala.runtime.AbstractFunction2;
import scala.runtime.BoxedUnit;

/**
 * The Spark SQL extension that guards `goldsmith serve-sql` from its clients. Enable with {@code
 * spark.sql.extensions=goldsmith.sql.Guard}; the server's own session (which registers the lakehouse's tables) is
 * exempted with {@link #trust}, the sessions of JDBC clients never are.
 *
 * <p>Every node of a client's analysed plan and of its subqueries, and every expression in them, is checked
 * before anything runs:
 * <ul>
 *   <li>a table is read only when it is a table of the lakehouse (registered by name) that the user is granted:
 *       a path (`text.`/etc/passwd``, `delta.`/another/lake``), a file source or any relation that is not a
 *       catalog table is refused;
 *   <li>functions that reach the JVM ({@code reflect}, {@code java_method}, {@code try_reflect}) are refused;
 *   <li>in read-only mode, every command but those that only read (SET of a few session settings, USE, SHOW,
 *       DESCRIBE, EXPLAIN) is refused: a command Spark adds later is refused until it is listed here;
 *   <li>the session settings that guard the server (reading files by path, the query timeout, the row cap) must
 *       still have the server's values: a client's `SET` of them, or a `--hiveconf` at connection, is refused.
 * </ul>
 * A refusal is one line to the client (an exception without a stack trace) and one audit line. {@code SHOW
 * TABLES} lists only what the user may read. A client's query whose result has more rows than the server's cap
 * ({@code goldsmith.sql.max_rows}) fails with one line saying so, rather than returning a silently cut result.
 *
 * <p>Grants (per user, in the users file; or the server's open grants without authentication): {@code layer}
 * (its tables but the quarantine ones), {@code layer.*} (every table of the layer), {@code layer.table}.
 */
public final class Guard extends AbstractFunction1<SparkSessionExtensions, BoxedUnit> {

  public static final String READ_ONLY_PROPERTY = "goldsmith.sql.read_only";
  public static final String OPEN_GRANTS_PROPERTY = "goldsmith.sql.open_grants";
  public static final String AUTH_PROPERTY = "goldsmith.sql.auth";
  public static final String MAX_ROWS_PROPERTY = "goldsmith.sql.max_rows";

  /** Commands that read only: by simple class name, so one list serves Spark's v1 and v2 plans. */
  static final Set<String> READ_ONLY_COMMANDS = Set.of(
      "SetCommand", "SetNamespaceCommand", "SetCatalogAndNamespace", "SetCatalogCommand",
      "ShowTables", "ShowTablesCommand", "ShowNamespaces", "ShowNamespacesCommand", "ShowCurrentNamespace",
      "ShowCurrentNamespaceCommand", "ShowColumns", "ShowColumnsCommand", "ShowFunctions", "ShowFunctionsCommand",
      "DescribeRelation", "DescribeTableCommand", "DescribeColumn", "DescribeColumnCommand", "DescribeNamespace",
      "DescribeDatabaseCommand", "DescribeFunction", "DescribeFunctionCommand", "DescribeQueryCommand",
      "ExplainCommand");

  /**
   * Leaves that read no table and no file a client could name. LogicalRDD and InMemoryRelation come only from
   * DataFrames made in the server (SQL cannot make them; CACHE is refused): Delta's own snapshot of a table's
   * log, which it reads while it plans a query (a count from the log's statistics, say).
   */
  static final Set<String> HARMLESS_LEAVES = Set.of(
      "LocalRelation", "OneRowRelation", "Range", "ResolvedNamespace", "ResolvedFunc", "ResolvedNonPersistentFunc",
      "ResolvedPersistentFunc", "CommandResult", "EmptyRelation", "LogicalRDD", "InMemoryRelation");

  /** Leaves that read a table or files. */
  static final Set<String> RELATIONS = Set.of(
      "LogicalRelation", "DataSourceV2Relation", "HiveTableRelation", "StreamingRelation",
      "StreamingRelationV2", "DataSourceV2ScanRelation");

  /** Expressions that call into the JVM. */
  static final Set<String> REFUSED_EXPRESSIONS = Set.of("CallMethodViaReflection", "TryReflect");

  /** Session settings a client may SET (the others are the server's). */
  static final Set<String> SETTABLE = Set.of(
      "spark.sql.session.timeZone", "spark.sql.ansi.enabled", "spark.sql.shuffle.partitions",
      "spark.sql.adaptive.enabled", "spark.sql.legacy.timeParserPolicy", "spark.sql.datetime.java8API.enabled",
      "spark.sql.caseSensitive", "spark.sql.timestampType");

  /** Settings whose server values every client session must keep (captured by {@link #trust}). */
  static final List<String> PROTECTED = List.of(
      "spark.sql.runSQLOnFiles", "spark.sql.thriftServer.queryTimeout", "spark.sql.extensions",
      "spark.sql.thriftServer.incrementalCollect", "spark.sql.catalogImplementation");

  /**
   * The queries clients sent and not yet finished, by the plan the parser made of each (a query's execution
   * keeps that plan as its logical plan): who sent it, from where, its id and text. The listener records how
   * each ended; queries Spark or Delta make inside a statement are not in it, so they are not audited. Keyed by
   * identity: two clients sending the same text at once parse to equal plans, and each must find its own.
   */
  static final Map<LogicalPlan, Pending> STATEMENTS = new IdentityHashMap<>();

  /** A client's query between its parse and its end; one whose end never came is dropped after a day. */
  record Pending(String user, String client, String statementId, String statement, long started) {}

  static void remember(LogicalPlan plan, Pending pending) {
    synchronized (STATEMENTS) {
      if (STATEMENTS.size() > 1000) {
        STATEMENTS.values().removeIf(p -> pending.started() - p.started() > 86_400_000L);
      }
      STATEMENTS.put(plan, pending);
    }
  }

  static Pending forget(LogicalPlan plan) {
    synchronized (STATEMENTS) {
      return STATEMENTS.remove(plan);
    }
  }

  private static final Set<SparkSession> TRUSTED = Collections.synchronizedSet(
      Collections.newSetFromMap(new WeakHashMap<>()));
  private static final Map<String, String> SERVER_VALUES = new ConcurrentHashMap<>();
  /** Each client session's address, recorded on its connection's thread when the session opens. */
  private static final Map<SparkSession, String> CLIENTS = Collections.synchronizedMap(new WeakHashMap<>());

  /** The address of the client whose session this is (null for the server's own). */
  static String client(SparkSession session) {
    String address = CLIENTS.get(session);
    return address != null ? address : Audit.client();
  }

  /** Exempts one session (the server's own, which attaches tables) and records the protected settings. */
  public static void trust(SparkSession session) {
    TRUSTED.add(session);
    for (String key : PROTECTED) {
      SERVER_VALUES.put(key, setting(session, key));
    }
  }

  /** The session's value of `key`, "" when it has none. */
  static String setting(SparkSession session, String key) {
    Option<String> value = session.conf().getOption(key);
    return value.isDefined() ? value.get() : "";
  }

  /** Why a statement is refused, found inside the checks. */
  static final class Refusal extends RuntimeException {
    Refusal(String message) {
      super(message, null, false, false);
    }
  }

  /**
   * What a refused statement throws: a HiveSQLException, which the Thrift server passes to the client as it is,
   * without a stack trace (any other exception it wraps, and sends the client the whole trace).
   */
  public static final class Refused extends HiveSQLException {
    Refused(String message) {
      super(message, "42000", 0);
    }

    @Override
    public synchronized Throwable fillInStackTrace() {
      return this;
    }

    @Override
    public void setStackTrace(StackTraceElement[] trace) {
      // Spark's lazy query phases put their caller's stack on a failure they rethrow: not on this one.
    }

    @Override
    public void printStackTrace(java.io.PrintWriter out) {
      out.println(getMessage());
    }

    @Override
    public void printStackTrace(java.io.PrintStream out) {
      out.println(getMessage());
    }

    @Override
    public String toString() {
      return getMessage();
    }
  }

  /**
   * Audits `refusal` of `user`'s statement, then throws it as a `Refused` (a checked exception, thrown through
   * Scala's functions).
   */
  static RuntimeException refuse(SparkSession session, String user, Refusal refusal) {
    Audit.statement(user, client(session), statementId(session), statement(session), false, refusal.getMessage(),
        null, null);
    Guard.<RuntimeException>sneakyThrow(new Refused(refusal.getMessage()));
    return refusal;
  }

  @SuppressWarnings("unchecked")
  private static <E extends Throwable> void sneakyThrow(Throwable thrown) throws E {
    throw (E) thrown;
  }

  @Override
  public BoxedUnit apply(SparkSessionExtensions extensions) {
    // Spark builds a session's parser when the Thrift server opens the session, on the connection's thread:
    // the one moment the client's address is known to the code that later runs its statements.
    extensions.injectParser(new AbstractFunction2<SparkSession, ParserInterface, ParserInterface>() {
      @Override
      public ParserInterface apply(SparkSession session, ParserInterface delegate) {
        String address = Audit.client();
        if (address != null) {
          CLIENTS.put(session, address);
        }
        return new ClientParser(session, delegate);
      }
    });
    extensions.injectPostHocResolutionRule(new AbstractFunction1<SparkSession, Rule<LogicalPlan>>() {
      @Override
      public Rule<LogicalPlan> apply(SparkSession session) {
        return new ClientRule(session);
      }
    });
    extensions.injectCheckRule(new AbstractFunction1<SparkSession, Function1<LogicalPlan, BoxedUnit>>() {
      @Override
      public Function1<LogicalPlan, BoxedUnit> apply(SparkSession session) {
        return new Check(session);
      }
    });
    return BoxedUnit.UNIT;
  }

  /** The user of the statement being analysed (the Thrift server sets it), or null outside a client's request. */
  static String user() {
    String user = CurrentUserContext.CURRENT_USER().get();
    return user == null || user.isEmpty() ? null : user;
  }

  static boolean isClient(SparkSession session) {
    return !TRUSTED.contains(session);
  }

  /** The grants of `user`: from the users file with authentication, the server's open grants without it. */
  static List<String> grants(String user) {
    if (Boolean.parseBoolean(System.getProperty(AUTH_PROPERTY, "true"))) {
      List<String> found = UsersAuthenticator.grantsOf(user);
      return found == null ? Collections.emptyList() : found;
    }
    List<String> open = new ArrayList<>();
    for (String grant : System.getProperty(OPEN_GRANTS_PROPERTY, "gold").split(",")) {
      if (!grant.isBlank()) {
        open.add(grant.trim());
      }
    }
    return open;
  }

  /** Whether `grants` let their user read `layer.table`. */
  static boolean granted(List<String> grants, String layer, String table) {
    String l = layer.toLowerCase();
    String t = table.toLowerCase();
    for (String grant : grants) {
      String g = grant.toLowerCase();
      if (g.equals(l + "." + t) || g.equals(l + ".*") || (g.equals(l) && !t.endsWith("_quarantine"))) {
        return true;
      }
    }
    return false;
  }

  /** Whether `grants` give anything in `layer`. */
  static boolean grantedIn(List<String> grants, String layer) {
    String l = layer.toLowerCase();
    for (String grant : grants) {
      String g = grant.toLowerCase();
      if (g.equals(l) || g.startsWith(l + ".")) {
        return true;
      }
    }
    return false;
  }

  /** The statement's text, as the Thrift server describes its jobs. */
  static String statement(SparkSession session) {
    return session.sparkContext().getLocalProperty("spark.job.description");
  }

  /** The statement's id, the Thrift server's job group. */
  static String statementId(SparkSession session) {
    return session.sparkContext().getLocalProperty("spark.jobGroup.id");
  }

  /** The server's cap on the rows of a client's result (0: none). */
  static int maxRows() {
    try {
      return Math.max(0, Integer.parseInt(System.getProperty(MAX_ROWS_PROPERTY, "0").trim()));
    } catch (NumberFormatException e) {
      return 0;
    }
  }

  /**
   * Parses like the parser it wraps; the query a client sent (the statement the Thrift server runs) comes back
   * capped: at most {@code max_rows + 1} rows are computed, and one more than the cap fails the query with a
   * message. The cap is at the root of the statement only, never in a subquery, a view or Delta's own reads.
   */
  static final class ClientParser implements ParserInterface {
    private final SparkSession session;
    private final ParserInterface delegate;

    ClientParser(SparkSession session, ParserInterface delegate) {
      this.session = session;
      this.delegate = delegate;
    }

    @Override
    public LogicalPlan parsePlan(String sqlText) throws ParseException {
      return client(sqlText, delegate.parsePlan(sqlText));
    }

    @Override
    public LogicalPlan parsePlanWithParameters(String sqlText, ParameterContext context) throws ParseException {
      return client(sqlText, delegate.parsePlanWithParameters(sqlText, context));
    }

    /** A query a client sent (the statement the Thrift server runs), capped and remembered for the audit. */
    private LogicalPlan client(String sqlText, LogicalPlan parsed) {
      if (!isClient(session) || !sqlText.equals(statement(session)) || parsed instanceof Command
          || parsed instanceof ParsedStatement || !parsed.getClass().getName().startsWith("org.apache.spark.sql.")) {
        return parsed;  // a command or a write (audited by the check), or a parse made inside Spark or Delta
      }
      LogicalPlan plan = capped(parsed);
      remember(plan, new Pending(user(), Guard.client(session), statementId(session), sqlText,
          System.currentTimeMillis()));
      return plan;
    }

    private static LogicalPlan capped(LogicalPlan plan) {
      int cap = maxRows();
      if (cap <= 0 || cap == Integer.MAX_VALUE) {
        return plan;
      }
      // One partition after the limit (Spark gathers a global limit into one), so the id counts rows; should
      // Spark drop the limit for a plan that cannot exceed it, each partition is counted alone, never over.
      Expression index = new org.apache.spark.sql.catalyst.expressions.BitwiseAnd(
          new MonotonicallyIncreasingID(), Literal.create((1L << 33) - 1, DataTypes.LongType));
      Expression check = new AssertTrue(
          new LessThan(index, Literal.create((long) cap, DataTypes.LongType)),
          Literal.create("goldsmith serve-sql: the result has more than " + cap + " rows (the server's "
              + "--max-rows); aggregate, filter or add a LIMIT", DataTypes.StringType));
      LogicalPlan limited = (LogicalPlan) (Object) Limit.apply(Literal.create(cap + 1, DataTypes.IntegerType), plan);
      return new Filter(new IsNull(check), limited);
    }

    @Override
    public Expression parseExpression(String sqlText) throws ParseException {
      return delegate.parseExpression(sqlText);
    }

    @Override
    public TableIdentifier parseTableIdentifier(String sqlText) throws ParseException {
      return delegate.parseTableIdentifier(sqlText);
    }

    @Override
    public FunctionIdentifier parseFunctionIdentifier(String sqlText) throws ParseException {
      return delegate.parseFunctionIdentifier(sqlText);
    }

    @Override
    public scala.collection.immutable.Seq<String> parseMultipartIdentifier(String sqlText) throws ParseException {
      return delegate.parseMultipartIdentifier(sqlText);
    }

    @Override
    public LogicalPlan parseQuery(String sqlText) throws ParseException {
      return delegate.parseQuery(sqlText);
    }

    @Override
    public StructType parseRoutineParam(String sqlText) throws ParseException {
      return delegate.parseRoutineParam(sqlText);
    }

    @Override
    public StructType parseTableSchema(String sqlText) throws ParseException {
      return delegate.parseTableSchema(sqlText);
    }

    @Override
    public DataType parseDataType(String sqlText) throws ParseException {
      return delegate.parseDataType(sqlText);
    }
  }

  /** Data source names Spark reads a path with (`csv.`/path``). */
  static final Set<String> FILE_FORMATS = Set.of(
      "text", "csv", "json", "parquet", "orc", "avro", "delta", "binaryfile", "xml", "jdbc", "libsvm", "image",
      "hive", "noop", "console", "kafka", "rate");

  /**
   * After resolution, before Spark reports what it could not resolve: refuses a read by path (`csv.`/x``)
   * in one line (with `spark.sql.runSQLOnFiles` off Spark would answer "table not found" with the query's
   * text around it), and wraps a client's SHOW TABLES in a filter that keeps the tables it may read.
   */
  static final class ClientRule extends Rule<LogicalPlan> {
    private final SparkSession session;

    ClientRule(SparkSession session) {
      this.session = session;
    }

    @Override
    public LogicalPlan apply(LogicalPlan plan) {
      if (!isClient(session)) {
        return plan;
      }
      try {
        plan.foreachWithSubqueries(new AbstractFunction1<LogicalPlan, BoxedUnit>() {
          @Override
          public BoxedUnit apply(LogicalPlan node) {
            if ("UnresolvedRelation".equals(node.getClass().getSimpleName())) {
              scala.collection.immutable.Seq<String> parts = call(node, "multipartIdentifier");
              if (parts != null && parts.size() == 2 && (FILE_FORMATS.contains(parts.apply(0).toLowerCase())
                  || parts.apply(1).contains("/"))) {
                throw new Refusal("goldsmith serve-sql: reading files by path is not allowed ("
                    + parts.apply(0) + ".`" + parts.apply(1) + "`); query the lakehouse's tables by name "
                    + "(layer.table)");
              }
            }
            return BoxedUnit.UNIT;
          }
        });
      } catch (Refusal refusal) {
        throw refuse(session, user(), refusal);
      }
      if (!"ShowTables".equals(plan.getClass().getSimpleName())) {
        return plan;
      }
      Attribute namespace = null;
      Attribute table = null;
      Iterator<Attribute> output = plan.output().iterator();
      while (output.hasNext()) {
        Attribute attribute = output.next();
        if ("namespace".equals(attribute.name())) {
          namespace = attribute;
        } else if ("tableName".equals(attribute.name())) {
          table = attribute;
        }
      }
      if (namespace == null || table == null) {
        return plan;
      }
      Expression keep = Literal.create(false, DataTypes.BooleanType);
      for (String grant : grants(user())) {
        String[] parts = grant.split("\\.", 2);
        Expression inLayer = new EqualTo(namespace, Literal.create(parts[0], DataTypes.StringType));
        Expression one;
        if (parts.length == 1) {
          one = new And(inLayer, new Not(new EndsWith(table, Literal.create("_quarantine", DataTypes.StringType))));
        } else if ("*".equals(parts[1])) {
          one = inLayer;
        } else {
          one = new And(inLayer, new EqualTo(table, Literal.create(parts[1], DataTypes.StringType)));
        }
        keep = new Or(keep, one);
      }
      return new Filter(keep, plan);
    }
  }

  /** Refuses what a client may not do (see the class comment). */
  static final class Check extends AbstractFunction1<LogicalPlan, BoxedUnit> {
    private final SparkSession session;

    Check(SparkSession session) {
      this.session = session;
    }

    @Override
    public BoxedUnit apply(LogicalPlan plan) {
      if (!isClient(session)) {
        return BoxedUnit.UNIT;
      }
      String user = user();
      try {
        for (String key : PROTECTED) {
          String server = SERVER_VALUES.get(key);
          if (server != null && !server.equals(setting(session, key))) {
            throw new Refusal("goldsmith serve-sql: the setting " + key + " is the server's; reconnect without "
                + "changing it");
          }
        }
        boolean readOnly = Boolean.parseBoolean(System.getProperty(READ_ONLY_PROPERTY, "true"));
        List<String> grants = grants(user);
        Map<LogicalPlan, String[]> named = new IdentityHashMap<>();
        plan.foreachWithSubqueries(new AbstractFunction1<LogicalPlan, BoxedUnit>() {
          @Override
          public BoxedUnit apply(LogicalPlan node) {
            checkNode(node, readOnly, grants, named);
            return BoxedUnit.UNIT;
          }
        });
        String statement = statement(session);
        boolean command = plan instanceof Command
            || !(plan.children().isEmpty()) && plan.children().head() instanceof Command;
        if (command && statement != null && !statement.startsWith("Delta: ")) {
          // A command runs at once and is not followed to its end: recorded as allowed here. (A query is
          // recorded when it ends, by the listener; Delta's own work inside a statement is not recorded.)
          Audit.statement(user, client(session), statementId(session), statement, true, null, null, null);
        }
      } catch (Refusal refusal) {
        throw refuse(session, user, refusal);
      }
      return BoxedUnit.UNIT;
    }

    private void checkNode(LogicalPlan node, boolean readOnly, List<String> grants, Map<LogicalPlan, String[]> named) {
      String name = node.getClass().getSimpleName();
      if ("SubqueryAlias".equals(name) && node.children().size() == 1) {
        // Spark wraps a table it resolved by name in an alias of that name (spark_catalog.layer.table): the
        // relation under it is that table. A relation without one was read by path.
        LogicalPlan child = node.children().head();
        AliasIdentifier alias = call(node, "identifier");
        if (alias != null && RELATIONS.contains(child.getClass().getSimpleName()) && !alias.qualifier().isEmpty()) {
          named.put(child, new String[] {alias.qualifier().last(), alias.name()});
        }
      }
      Iterator<Expression> expressions = node.expressions().iterator();
      while (expressions.hasNext()) {
        expressions.next().foreach(new AbstractFunction1<Expression, BoxedUnit>() {
          @Override
          public BoxedUnit apply(Expression expression) {
            String kind = expression.getClass().getSimpleName();
            if (REFUSED_EXPRESSIONS.contains(kind)) {
              throw new Refusal("goldsmith serve-sql: " + expression.prettyName() + " calls into the server's JVM "
                  + "and is not allowed");
            }
            return BoxedUnit.UNIT;
          }
        });
      }
      if (node instanceof Command) {
        if (readOnly && !READ_ONLY_COMMANDS.contains(name)) {
          throw new Refusal("goldsmith serve-sql is read-only: " + name + " would change a table or the catalog; "
              + "tables are written by pipeline runs (start the server with --writable to allow it)");
        }
        if ("SetCommand".equals(name)) {
          checkSet(node);
        }
        for (TableIdentifier table : tablesOf(node)) {
          checkTable(grants, table);
        }
        return;
      }
      if (!node.children().isEmpty()) {
        return;
      }
      String[] table = named.get(node);
      if (table != null) {
        checkTable(grants, table[0], table[1]);
        return;
      }
      if ("DataSourceV2Relation".equals(name) || "ResolvedTable".equals(name)) {
        Object found = call(node, "identifier");
        Identifier identifier = found instanceof Option && ((Option<?>) found).isDefined()
            ? (Identifier) ((Option<?>) found).get() : found instanceof Identifier ? (Identifier) found : null;
        if (identifier == null || identifier.namespace().length != 1) {
          throw pathRead(node);
        }
        checkTable(grants, identifier.namespace()[0], identifier.name());
        return;
      }
      if ("HiveTableRelation".equals(name)) {
        CatalogTable meta = call(node, "tableMeta");
        checkTable(grants, meta.identifier());
        return;
      }
      if ("LogicalRelation".equals(name) && readsDeltaLog(node)) {
        return;  // Delta reading a table's own log (its checkpoints and commits) while it resolves the table
      }
      if (RELATIONS.contains(name)) {
        throw pathRead(node);
      }
      if (!HARMLESS_LEAVES.contains(name)) {
        throw new Refusal("goldsmith serve-sql: " + name + " reads something that is not a table of the "
            + "lakehouse; query the tables by name (layer.table)");
      }
    }

    /** Whether a file relation reads only files of `_delta_log` folders. */
    private static boolean readsDeltaLog(LogicalPlan node) {
      Object relation = call(node, "relation");
      Object location = relation == null ? null : call(relation, "location");
      scala.collection.immutable.Seq<?> roots = location == null ? null : call(location, "rootPaths");
      if (roots == null || roots.isEmpty()) {
        return false;
      }
      scala.collection.Iterator<?> paths = roots.iterator();
      while (paths.hasNext()) {
        if (!paths.next().toString().contains("/_delta_log")) {
          return false;
        }
      }
      return true;
    }

    private static Refusal pathRead(LogicalPlan node) {
      return new Refusal("goldsmith serve-sql: reading files by path is not allowed (" + node.nodeName()
          + "); query the lakehouse's tables by name (layer.table)");
    }

    private void checkTable(List<String> grants, TableIdentifier table) {
      checkTable(grants, table.database().isDefined() ? table.database().get() : "default", table.table());
    }

    private void checkTable(List<String> grants, String layer, String table) {
      if (!granted(grants, layer, table)) {
        throw new Refusal("goldsmith serve-sql: " + (user() == null ? "this user" : "user " + user())
            + " may not read " + layer + "." + table);
      }
    }

    private void checkSet(LogicalPlan node) {
      Option<Tuple2<String, Option<String>>> kv = call(node, "kv");
      if (kv == null || kv.isEmpty() || kv.get()._2().isEmpty()) {
        return;  // SET, SET -v, SET key: they show values
      }
      String key = kv.get()._1();
      if (!SETTABLE.contains(key) && !key.startsWith("hivevar:")) {
        throw new Refusal("goldsmith serve-sql: SET " + key + " is not allowed; a client may set "
            + String.join(", ", new java.util.TreeSet<>(SETTABLE)));
      }
    }

    /** The tables a v1 command names (DESCRIBE t, SHOW COLUMNS IN t, ...), found by its accessors. */
    private static List<TableIdentifier> tablesOf(LogicalPlan node) {
      List<TableIdentifier> found = new ArrayList<>();
      for (String accessor : new String[] {"table", "tableName", "tableIdent", "tableIdentifier"}) {
        Object value = call(node, accessor);
        if (value instanceof Option && ((Option<?>) value).isDefined()) {
          value = ((Option<?>) value).get();
        }
        if (value instanceof TableIdentifier) {
          found.add((TableIdentifier) value);
        }
      }
      return found;
    }
  }

  /**
   * Records how each allowed client query ended: its rows (as the top operator of the plan that counts rows
   * counted them) and duration, or its error. Registered with {@code spark.sql.queryExecutionListeners}.
   */
  public static final class Listener implements QueryExecutionListener {
    @Override
    public void onSuccess(String funcName, QueryExecution qe, long durationNs) {
      Pending pending = forget(qe.logical());
      if (pending != null) {
        Audit.statement(pending.user(), pending.client(), pending.statementId(), pending.statement(), true, null,
            rows(qe.executedPlan()), durationNs / 1_000_000);
      }
    }

    @Override
    public void onFailure(String funcName, QueryExecution qe, Exception exception) {
      Pending pending = forget(qe.logical());
      if (pending == null || causedBy(exception, Refused.class)) {
        return;  // not a client's query, or a refusal (audited where it is made)
      }
      String message = causedBy(exception, InterruptedException.class)
          ? "cancelled (the client closed the statement or went away, or it timed out)"
          : (exception.getMessage() == null ? exception.toString() : exception.getMessage()).split("\n", 2)[0];
      Audit.statement(pending.user(), pending.client(), pending.statementId(), pending.statement(), true,
          "failed: " + message, null, null);
    }

    private static boolean causedBy(Throwable exception, Class<? extends Throwable> kind) {
      for (Throwable cause = exception; cause != null; cause = cause.getCause()) {
        if (kind.isInstance(cause)) {
          return true;
        }
      }
      return false;
    }

    static Long rows(SparkPlan plan) {
      SparkPlan node = plan;
      while (node != null) {
        if (node instanceof AdaptiveSparkPlanExec) {
          node = ((AdaptiveSparkPlanExec) node).executedPlan();
          continue;
        }
        if (node.getClass().getSimpleName().endsWith("QueryStageExec")) {
          node = call(node, "plan");  // an adaptive plan's stage: the plan it ran
          continue;
        }
        Option<SQLMetric> metric = node.metrics().get("numOutputRows");
        if (metric.isDefined()) {
          return metric.get().value();
        }
        if (node.children().size() != 1) {
          return null;
        }
        node = node.children().head();
      }
      return null;
    }
  }

  @SuppressWarnings("unchecked")
  static <T> T call(Object target, String accessor) {
    try {
      Method method = target.getClass().getMethod(accessor);
      return (T) method.invoke(target);
    } catch (ReflectiveOperationException | ClassCastException e) {
      return null;
    }
  }
}
