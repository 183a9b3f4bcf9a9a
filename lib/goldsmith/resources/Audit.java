package goldsmith.sql;

import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.time.Instant;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

import org.apache.hive.service.auth.TSetIpAddressProcessor;
import org.apache.hive.service.cli.session.SessionManager;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The audit trail of `goldsmith serve-sql`: one JSON line per login refused and per statement (allowed or
 * refused, with its rows and duration when it ran), appended to the file named by the system property {@code
 * goldsmith.sql.audit}. The server copies the lines into {@code ops.sql_audit} in batches.
 */
public final class Audit {

  public static final String AUDIT_PROPERTY = "goldsmith.sql.audit";
  private static final Logger LOG = LoggerFactory.getLogger(Audit.class);
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final Object LOCK = new Object();

  private Audit() {}

  /** The client's address, as the Thrift server's connection thread knows it (null elsewhere). */
  static String client() {
    try {
      String address = TSetIpAddressProcessor.getUserIpAddress();
      return address != null ? address : SessionManager.getIpAddress();
    } catch (RuntimeException | LinkageError e) {
      return null;
    }
  }

  static void refusedLogin(String user) {
    ObjectNode line = JSON.createObjectNode();
    line.put("event", "login");
    line.put("user", user);
    line.put("client", client());
    line.put("allowed", false);
    line.put("reason", "authentication failed");
    write(line);
  }

  static void statement(String user, String client, String statementId, String statement, boolean allowed,
      String reason, Long rows, Long millis) {
    ObjectNode line = JSON.createObjectNode();
    line.put("event", "statement");
    line.put("user", user);
    line.put("client", client);
    line.put("statement_id", statementId);
    line.put("statement", statement);
    line.put("allowed", allowed);
    line.put("reason", reason);
    if (rows != null) {
      line.put("rows", rows);
    } else {
      line.putNull("rows");
    }
    if (millis != null) {
      line.put("duration_ms", millis);
    } else {
      line.putNull("duration_ms");
    }
    write(line);
  }

  private static void write(ObjectNode line) {
    String path = System.getProperty(AUDIT_PROPERTY);
    if (path == null) {
      return;
    }
    line.put("at", Instant.now().toString());
    try {
      byte[] bytes = (JSON.writeValueAsString(line) + "\n").getBytes(StandardCharsets.UTF_8);
      synchronized (LOCK) {
        try (OutputStream out = new FileOutputStream(path, true)) {
          out.write(bytes);
        }
      }
    } catch (IOException e) {
      LOG.warn("goldsmith serve-sql: cannot append to the audit log {}: {}", path, e.getMessage());
    }
  }
}
