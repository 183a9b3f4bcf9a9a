package goldsmith.sql;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.security.spec.InvalidKeySpecException;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collections;
import java.util.HashMap;
import java.util.Hashtable;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

import javax.crypto.SecretKeyFactory;
import javax.crypto.spec.PBEKeySpec;
import javax.naming.Context;
import javax.naming.NamingException;
import javax.naming.directory.InitialDirContext;
import javax.naming.ldap.Rdn;
import javax.security.sasl.AuthenticationException;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import org.apache.hive.service.auth.PasswdAuthenticationProvider;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The password check of `goldsmith serve-sql`: Spark's Thrift server with {@code
 * hive.server2.authentication=CUSTOM} asks it about every connection's user name and password.
 *
 * <p>Users live in a JSON file written by {@code goldsmith serve-sql users add} (path in the system property
 * {@code goldsmith.sql.users}): per user, a PBKDF2-HMAC-SHA256 hash of the password
 * ({@code pbkdf2_sha256$<iterations>$<salt, base64>$<hash, base64>}) and the grants. The file is read again
 * when it changes, so users and grants change without a restart. A wrong password, an unknown user and an
 * empty password get the same answer and take the same time (an unknown user is checked against a dummy hash).
 *
 * <p>With an LDAP directory (system properties {@code goldsmith.sql.ldap.url} and {@code
 * goldsmith.sql.ldap.user_dn}, a DN pattern with {@code {user}}), the password is checked by a simple bind as
 * that user's DN instead (the name escaped as an RDN value, an empty password refused before the directory sees
 * it: LDAP takes an empty password as an anonymous bind). The users file then only grants: a user it does not
 * list reads {@code gold}.
 */
public final class UsersAuthenticator implements PasswdAuthenticationProvider {

  public static final String USERS_PROPERTY = "goldsmith.sql.users";
  public static final String LDAP_URL_PROPERTY = "goldsmith.sql.ldap.url";
  public static final String LDAP_DN_PROPERTY = "goldsmith.sql.ldap.user_dn";
  static final List<String> LDAP_DEFAULT_GRANTS = List.of("gold");
  static final String REFUSED = "goldsmith serve-sql: authentication failed";
  private static final Logger LOG = LoggerFactory.getLogger(UsersAuthenticator.class);
  private static final String DUMMY =
      "pbkdf2_sha256$600000$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

  /** One user's entry of the file. */
  public static final class User {
    final String hash;
    final List<String> grants;

    User(String hash, List<String> grants) {
      this.hash = hash;
      this.grants = grants;
    }

    public List<String> grants() {
      return grants;
    }
  }

  private static final Object LOCK = new Object();
  private static Map<String, User> users = Collections.emptyMap();
  private static long loadedModified = -1;
  private static long loadedLength = -1;
  private static String loadedPath = null;

  /** The users of the file, read again when its size or modification time changed. */
  public static Map<String, User> users() {
    String path = System.getProperty(USERS_PROPERTY);
    if (path == null) {
      return Collections.emptyMap();
    }
    File file = new File(path);
    if (!file.exists()) {
      return Collections.emptyMap();  // LDAP without a users file: everyone has the default grants
    }
    synchronized (LOCK) {
      long modified = file.lastModified();
      long length = file.length();
      if (path.equals(loadedPath) && modified == loadedModified && length == loadedLength) {
        return users;
      }
      try {
        users = parse(new ObjectMapper().readTree(file));
        loadedPath = path;
        loadedModified = modified;
        loadedLength = length;
        LOG.info("goldsmith serve-sql: {} user(s) from {}", users.size(), path);
      } catch (IOException | RuntimeException e) {
        // A file caught mid-write (the CLI replaces it atomically, an editor may not): keep the last good one.
        LOG.warn("goldsmith serve-sql: cannot read the users file {}: {}", path, e.getMessage());
      }
      return users;
    }
  }

  static Map<String, User> parse(JsonNode root) {
    Map<String, User> found = new HashMap<>();
    JsonNode entries = root.path("users");
    Iterator<Map.Entry<String, JsonNode>> fields = entries.fields();
    while (fields.hasNext()) {
      Map.Entry<String, JsonNode> entry = fields.next();
      List<String> grants = new ArrayList<>();
      for (JsonNode grant : entry.getValue().path("grants")) {
        grants.add(grant.asText());
      }
      found.put(entry.getKey(), new User(entry.getValue().path("password").asText(""),
          Collections.unmodifiableList(grants)));
    }
    return Collections.unmodifiableMap(found);
  }

  /** The grants of `user`, or null when there is no such user. */
  public static List<String> grantsOf(String user) {
    User found = user == null ? null : users().get(user);
    if (found == null && user != null && System.getProperty(LDAP_URL_PROPERTY) != null) {
      return LDAP_DEFAULT_GRANTS;
    }
    return found == null ? null : found.grants;
  }

  @Override
  public void Authenticate(String rawUser, String rawPassword) throws AuthenticationException {
    String user = utf8(rawUser);
    String password = utf8(rawPassword);
    String ldap = System.getProperty(LDAP_URL_PROPERTY);
    boolean ok;
    if (ldap != null) {
      boolean empty = user == null || user.isEmpty() || password == null || password.isEmpty();
      ok = !empty && bind(ldap, System.getProperty(LDAP_DN_PROPERTY, ""), user, password);
    } else {
      User found = user == null ? null : users().get(user);
      boolean matched = matches(found == null ? DUMMY : found.hash, password == null ? "" : password);
      ok = found != null && matched && password != null && !password.isEmpty();
    }
    if (!ok) {
      LOG.warn("goldsmith serve-sql: refused a connection as user '{}'{}", user, ldap != null ? " (LDAP)" : "");
      Audit.refusedLogin(user);
      throw new AuthenticationException(REFUSED);
    }
  }

  /** Whether the directory at `url` accepts `password` for the DN `pattern` makes of `user`. */
  static boolean bind(String url, String pattern, String user, String password) {
    Hashtable<String, String> env = new Hashtable<>();
    env.put(Context.INITIAL_CONTEXT_FACTORY, "com.sun.jndi.ldap.LdapCtxFactory");
    env.put(Context.PROVIDER_URL, url);
    env.put(Context.SECURITY_AUTHENTICATION, "simple");
    env.put(Context.SECURITY_PRINCIPAL, pattern.replace("{user}", Rdn.escapeValue(user)));
    env.put(Context.SECURITY_CREDENTIALS, password);
    env.put("com.sun.jndi.ldap.connect.timeout", "5000");
    env.put("com.sun.jndi.ldap.read.timeout", "10000");
    try {
      new InitialDirContext(env).close();
      return true;
    } catch (javax.naming.AuthenticationException e) {
      return false;
    } catch (NamingException e) {
      LOG.warn("goldsmith serve-sql: the LDAP directory {} did not answer: {}", url, e.toString());
      return false;
    }
  }

  /** Whether `password` hashes to `stored` (constant time in the hash comparison). */
  static boolean matches(String stored, String password) {
    String[] parts = stored.split("\\$");
    if (parts.length != 4 || !"pbkdf2_sha256".equals(parts[0])) {
      return false;
    }
    try {
      int iterations = Integer.parseInt(parts[1]);
      byte[] salt = Base64.getDecoder().decode(parts[2]);
      byte[] expected = Base64.getDecoder().decode(parts[3]);
      PBEKeySpec spec = new PBEKeySpec(password.toCharArray(), salt, iterations, expected.length * 8);
      byte[] actual = SecretKeyFactory.getInstance("PBKDF2WithHmacSHA256").generateSecret(spec).getEncoded();
      spec.clearPassword();
      return MessageDigest.isEqual(expected, actual);
    } catch (IllegalArgumentException | NoSuchAlgorithmException | InvalidKeySpecException e) {
      return false;
    }
  }

  /** For a test: whether the JVM's PBKDF2 agrees with Python's on `stored`. */
  public static boolean check(String stored, String password) {
    return matches(stored, password);
  }

  /**
   * Hive's PLAIN login turns the client's bytes into chars one by one with a cast, so a byte above 0x7F becomes
   * 0xFF80-0xFFFF; clients send UTF-8 (beeline, JDBC, PyHive): the bytes back, decoded as UTF-8.
   */
  static String utf8(String decoded) {
    if (decoded == null) {
      return null;
    }
    byte[] bytes = new byte[decoded.length()];
    for (int i = 0; i < decoded.length(); i++) {
      char c = decoded.charAt(i);
      if (c > 0xFF && c < 0xFF80) {
        return decoded;  // not what that cast makes: leave it
      }
      bytes[i] = (byte) c;
    }
    return new String(bytes, StandardCharsets.UTF_8);
  }
}
