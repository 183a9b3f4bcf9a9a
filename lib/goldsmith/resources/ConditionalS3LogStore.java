package goldsmith.storage;

import io.delta.storage.HadoopFileSystemLogStore;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.util.Arrays;
import java.util.Iterator;
import java.util.UUID;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FSDataOutputStreamBuilder;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * Delta's log store for s3a:// that makes a commit exclusive across processes and machines.
 *
 * <p>A Delta commit creates {@code _delta_log/<version>.json}; two writers that read the same version both try
 * to create the next one, and exactly one may succeed. Delta's S3 log store only excludes writers within one
 * JVM. This one asks the store itself: the object is PUT with {@code If-None-Match: *} (the S3A connector's
 * conditional create), and a store that already has the key answers 412, which becomes the
 * {@link FileAlreadyExistsException} Delta expects from a lost race (it then re-reads the log and retries or
 * reports the conflict). AWS S3 (since 2024) and SeaweedFS honour the header.
 *
 * <p>The connector retries a PUT whose response was lost; the retry of a PUT that did succeed also gets 412.
 * Each write therefore carries a random id in its object metadata, and a 412 on an object that bears this
 * write's own id is this write's success, not a conflict.
 */
public final class ConditionalS3LogStore extends HadoopFileSystemLogStore {
  /** The connector sends `fs.s3a.create.header.NAME` options as object metadata (x-amz-meta-NAME). */
  static final String WRITE_ID = "goldsmith-write-id";

  public ConditionalS3LogStore(Configuration hadoopConf) {
    super(hadoopConf);
  }

  @Override
  public void write(Path path, Iterator<String> actions, Boolean overwrite, Configuration hadoopConf)
      throws IOException {
    FileSystem fs = path.getFileSystem(hadoopConf);
    StringBuilder text = new StringBuilder();
    while (actions.hasNext()) {
      text.append(actions.next()).append('\n');
    }
    byte[] body = text.toString().getBytes(StandardCharsets.UTF_8);
    if (overwrite) { // checkpoints' _last_checkpoint and the like: plain PUT
      try (FSDataOutputStream out = fs.create(path, true)) {
        out.write(body);
      }
      return;
    }
    String writeId = UUID.randomUUID().toString();
    FSDataOutputStreamBuilder<?, ?> builder = fs.createFile(path).overwrite(false);
    builder.must("fs.option.create.conditional.overwrite", true);
    builder.opt("fs.s3a.create.header." + WRITE_ID, writeId);
    try (FSDataOutputStream out = builder.build()) {
      out.write(body);
    } catch (InterruptedIOException e) {
      throw e;
    } catch (IOException e) {
      if (!preconditionFailed(e)) {
        throw e;
      }
      if (writtenBy(fs, path, writeId)) {
        return; // a retried PUT found its own first attempt
      }
      FileAlreadyExistsException lost = new FileAlreadyExistsException(path.toString());
      lost.initCause(e);
      throw lost;
    }
  }

  /** Whether the failure (or a cause of it) is the store's 412 to a conditional create. */
  static boolean preconditionFailed(Throwable error) {
    for (Throwable t = error; t != null; t = t.getCause()) {
      if (t instanceof FileAlreadyExistsException
          || t instanceof org.apache.hadoop.fs.FileAlreadyExistsException) {
        return true;
      }
      String name = t.getClass().getSimpleName();
      String message = String.valueOf(t.getMessage());
      if (name.equals("RemoteFileChangedException")
          || message.contains("412")
          || message.contains("PreconditionFailed")
          || message.contains("Precondition Failed")) {
        return true;
      }
      if (t.getCause() == t) {
        break;
      }
    }
    return false;
  }

  private static boolean writtenBy(FileSystem fs, Path path, String writeId) {
    try {
      byte[] found = fs.getXAttr(path, "header.x-amz-meta-" + WRITE_ID);
      return found != null
          && Arrays.equals(found, writeId.getBytes(StandardCharsets.UTF_8));
    } catch (IOException | UnsupportedOperationException e) {
      return false;
    }
  }

  @Override
  public Boolean isPartialWriteVisible(Path path, Configuration hadoopConf) {
    return false; // an object appears whole when its PUT completes
  }
}
