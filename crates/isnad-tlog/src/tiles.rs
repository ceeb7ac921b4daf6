//! C2SP tlog-tiles layout (<https://c2sp.org/tlog-tiles>): paths, which
//! tiles a tree of a given size has, and entry-bundle framing.

/// Tile height: each tile covers 8 tree levels.
pub const TILE_HEIGHT: u32 = 8;
/// Hashes (or entries) in a full tile (or bundle): 2^8.
pub const TILE_WIDTH: u64 = 256;
/// Path of the checkpoint inside an export.
pub const CHECKPOINT_PATH: &str = "checkpoint";

/// Encodes a tile index as path segments: groups of three decimal digits,
/// every group but the last prefixed with `x` (`1234067` → `x001/x234/067`).
pub fn encode_index(n: u64) -> String {
    let mut groups = Vec::new();
    let mut n = n;
    loop {
        groups.push(n % 1000);
        n /= 1000;
        if n == 0 {
            break;
        }
    }
    let last = groups.len() - 1;
    groups
        .iter()
        .rev()
        .enumerate()
        .map(|(i, g)| {
            if i == last {
                format!("{g:03}")
            } else {
                format!("x{g:03}")
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// `tile/<L>/<N>` for a full tile or `tile/<L>/<N>.p/<W>` for a partial one.
pub fn tile_path(level: u32, index: u64, width: u64) -> String {
    let mut s = format!("tile/{level}/{}", encode_index(index));
    if width < TILE_WIDTH {
        s.push_str(&format!(".p/{width}"));
    }
    s
}

/// `tile/entries/<N>` for a full bundle or `tile/entries/<N>.p/<W>`.
pub fn entries_path(index: u64, width: u64) -> String {
    let mut s = format!("tile/entries/{}", encode_index(index));
    if width < TILE_WIDTH {
        s.push_str(&format!(".p/{width}"));
    }
    s
}

/// Every hash tile `(level, index, width)` of a tree of `size` leaves: at
/// level `L` there are `n = size >> 8L` hashes (tree level `8L`), stored in
/// `n / 256` full tiles and one partial tile of width `n % 256` if non-zero.
pub fn tiles_for(size: u64) -> Vec<(u32, u64, u64)> {
    let mut out = Vec::new();
    let mut level = 0u32;
    loop {
        let shift = level * TILE_HEIGHT;
        if shift >= 64 {
            break;
        }
        let n = size >> shift;
        if n == 0 {
            break;
        }
        for i in 0..n / TILE_WIDTH {
            out.push((level, i, TILE_WIDTH));
        }
        if !n.is_multiple_of(TILE_WIDTH) {
            out.push((level, n / TILE_WIDTH, n % TILE_WIDTH));
        }
        level += 1;
    }
    out
}

/// Why an entry bundle cannot be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The bundle ends inside a length prefix or an entry.
    #[error("bundle is truncated inside entry {position}")]
    Truncated {
        /// Position of the entry within the bundle.
        position: usize,
    },
    /// An entry has length zero.
    #[error("entry {position} in the bundle is empty")]
    Empty {
        /// Position of the entry within the bundle.
        position: usize,
    },
    /// Bytes remain after the expected number of entries.
    #[error("bundle has {count} bytes after its last entry")]
    Trailing {
        /// How many.
        count: usize,
    },
}

/// Splits an entry bundle (`uint16` big-endian length ‖ entry, repeated)
/// into exactly `count` entries.
pub fn split_bundle(data: &[u8], count: usize) -> Result<Vec<&[u8]>, BundleError> {
    let mut out = Vec::with_capacity(count.min(TILE_WIDTH as usize));
    let mut rest = data;
    for position in 0..count {
        let Some((len, tail)) = rest.split_first_chunk::<2>() else {
            return Err(BundleError::Truncated { position });
        };
        let len = usize::from(u16::from_be_bytes(*len));
        if len == 0 {
            return Err(BundleError::Empty { position });
        }
        if tail.len() < len {
            return Err(BundleError::Truncated { position });
        }
        out.push(&tail[..len]);
        rest = &tail[len..];
    }
    if !rest.is_empty() {
        return Err(BundleError::Trailing { count: rest.len() });
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests panic on failure by design.
mod tests {
    use super::*;

    #[test]
    fn index_encoding() {
        assert_eq!(encode_index(0), "000");
        assert_eq!(encode_index(5), "005");
        assert_eq!(encode_index(999), "999");
        assert_eq!(encode_index(1000), "x001/000");
        assert_eq!(encode_index(1_234_067), "x001/x234/067");
        assert_eq!(tile_path(0, 1_234_067, 256), "tile/0/x001/x234/067");
        assert_eq!(tile_path(1, 0, 44), "tile/1/000.p/44");
        assert_eq!(entries_path(3, 5), "tile/entries/003.p/5");
    }

    #[test]
    fn tiles_for_sizes() {
        assert!(tiles_for(0).is_empty());
        assert_eq!(tiles_for(1), vec![(0, 0, 1)]);
        assert_eq!(tiles_for(256), vec![(0, 0, 256), (1, 0, 1)]);
        assert_eq!(tiles_for(300), vec![(0, 0, 256), (0, 1, 44), (1, 0, 1)]);
        assert_eq!(tiles_for(65_536).last(), Some(&(2, 0, 1)));
    }

    #[test]
    fn bundles() {
        let b = [0, 1, 7, 0, 2, 8, 9];
        assert_eq!(split_bundle(&b, 2).unwrap(), vec![&[7u8][..], &[8, 9][..]]);
        assert_eq!(split_bundle(&b, 1), Err(BundleError::Trailing { count: 4 }));
        assert_eq!(
            split_bundle(&b, 3),
            Err(BundleError::Truncated { position: 2 })
        );
        assert_eq!(
            split_bundle(&[0, 0], 1),
            Err(BundleError::Empty { position: 0 })
        );
        assert_eq!(
            split_bundle(&[0, 5, 1], 1),
            Err(BundleError::Truncated { position: 0 })
        );
    }
}
