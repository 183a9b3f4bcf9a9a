package goldsmith.storage;

import java.io.FileNotFoundException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.attribute.PosixFilePermission;
import java.util.EnumSet;
import java.util.Set;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.fs.permission.FsPermission;

/**
 * Hadoop's local file system (file://, with its .crc checksums) without a process per file.
 *
 * <p>Without Hadoop's native library, which pyspark does not ship, {@link RawLocalFileSystem} forks
 * {@code chmod} for every file and folder it creates with a permission, and {@code readlink} twice for every
 * rename through a FileContext (Delta's commit of each log file). A one-row Delta append on a local disk started
 * 25 processes from the JVM (measured with the JDK's flight recorder). This class sets permissions and tells
 * links from files with {@code java.nio}, in the JVM; a symbolic link, a sticky bit or a file system without
 * POSIX permissions still goes through Hadoop's own code.
 */
public class LocalFileSystem extends org.apache.hadoop.fs.LocalFileSystem {
  public LocalFileSystem() {
    super(new Raw());
  }

  /** The raw (checksum-less) local file system underneath: the same, minus the forks. */
  public static class Raw extends RawLocalFileSystem {
    // Permission bits from the lowest (others' execute) to the highest (owner's read).
    private static final PosixFilePermission[] BITS = {
      PosixFilePermission.OTHERS_EXECUTE, PosixFilePermission.OTHERS_WRITE, PosixFilePermission.OTHERS_READ,
      PosixFilePermission.GROUP_EXECUTE, PosixFilePermission.GROUP_WRITE, PosixFilePermission.GROUP_READ,
      PosixFilePermission.OWNER_EXECUTE, PosixFilePermission.OWNER_WRITE, PosixFilePermission.OWNER_READ,
    };

    @Override
    public void setPermission(Path p, FsPermission permission) throws IOException {
      short mode = permission.toShort();
      if ((mode & ~0777) != 0) { // sticky, setuid, setgid: only chmod sets those
        super.setPermission(p, permission);
        return;
      }
      Set<PosixFilePermission> granted = EnumSet.noneOf(PosixFilePermission.class);
      for (int bit = 0; bit < BITS.length; bit++) {
        if ((mode & (1 << bit)) != 0) {
          granted.add(BITS[bit]);
        }
      }
      try {
        Files.setPosixFilePermissions(pathToFile(p).toPath(), granted);
      } catch (NoSuchFileException e) {
        throw new FileNotFoundException("File " + p + " does not exist");
      } catch (UnsupportedOperationException e) { // a file system without POSIX permissions
        super.setPermission(p, permission);
      }
    }

    @Override
    public FileStatus getFileLinkStatus(Path f) throws IOException {
      if (!Files.isSymbolicLink(pathToFile(f).toPath())) {
        return getFileStatus(f); // a file, a folder, or nothing (FileNotFoundException), as Hadoop answers
      }
      return super.getFileLinkStatus(f);
    }
  }
}
