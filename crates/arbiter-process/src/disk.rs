//! Which filesystem a path is on: SQLite's WAL needs shared memory and POSIX locks that
//! network filesystems (NFS, SMB, …) do not give, so a SQLite store there is refused.

use std::path::Path;

/// A filesystem as far as arbiter cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filesystem {
    /// `ext4`, `nfs`, `smbfs`, … (or the magic number when unknown).
    pub name: String,
    /// A network (or cluster) filesystem where SQLite's WAL is unsafe.
    pub network: bool,
}

/// The filesystem `path` (an existing file or directory) is on; `None` where it cannot
/// be told (Windows, an error).
pub fn filesystem(path: &Path) -> Option<Filesystem> {
    imp::filesystem(path)
}

/// Linux `statfs` magic numbers: the name, and whether it is a network filesystem.
pub fn linux_filesystem(magic: i64) -> Filesystem {
    let (name, network) = match magic {
        0xEF53 => ("ext4", false),
        0x5846_5342 => ("xfs", false),
        0x9123_683E => ("btrfs", false),
        0x0102_1994 => ("tmpfs", false),
        0x794C_7630 => ("overlayfs", false),
        0xF2F5_2010 => ("f2fs", false),
        0x2FC1_2FC1 => ("zfs", false),
        0x4d44 => ("vfat", false),
        0x6573_5546 => ("fuse", false),
        0x6969 => ("nfs", true),
        0x517B => ("smb", true),
        0xFF53_4D42 => ("cifs", true),
        0xFE53_4D42 => ("smb2", true),
        0x7375_7245 => ("coda", true),
        0x5346_414F => ("afs", true),
        0x564C => ("ncp", true),
        0x00C3_6400 => ("ceph", true),
        0x0102_1997 => ("9p", true),
        0x0116_1970 => ("gfs2", true),
        0x7461_636F => ("ocfs2", true),
        0x0BD0_0BD0 => ("lustre", true),
        other => {
            return Filesystem {
                name: format!("{other:#x}"),
                network: false,
            };
        }
    };
    Filesystem {
        name: name.to_string(),
        network,
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use super::*;

    pub fn filesystem(path: &Path) -> Option<Filesystem> {
        let stat = nix::sys::statfs::statfs(path).ok()?;
        Some(linux_filesystem(stat.filesystem_type().0 as i64))
    }
}

#[cfg(target_os = "macos")]
mod imp {
    use super::*;

    pub fn filesystem(path: &Path) -> Option<Filesystem> {
        let stat = nix::sys::statfs::statfs(path).ok()?;
        let name = stat.filesystem_type_name().to_string();
        let network = ["nfs", "smbfs", "afpfs", "webdav", "cifs", "ftp"].contains(&name.as_str());
        Some(Filesystem { name, network })
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod imp {
    use super::*;

    pub fn filesystem(_path: &Path) -> Option<Filesystem> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_filesystems_are_known() {
        for magic in [0x6969, 0xFF53_4D42, 0xFE53_4D42, 0x517B, 0x00C3_6400] {
            assert!(linux_filesystem(magic).network, "{magic:#x}");
        }
        assert_eq!(
            linux_filesystem(0xEF53),
            Filesystem {
                name: "ext4".into(),
                network: false
            }
        );
        assert!(!linux_filesystem(0x1234).network);
        let here = filesystem(Path::new(env!("CARGO_MANIFEST_DIR")));
        assert!(cfg!(not(target_os = "linux")) || here.is_some_and(|f| !f.name.is_empty()));
    }
}
