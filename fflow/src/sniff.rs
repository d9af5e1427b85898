//! Decides from the first bytes of an upload whether ffmpeg can read it while it arrives.
//!
//! MPEG-TS, Matroska and WebM are read front to back. An MP4 (or QuickTime) file can be read
//! from a pipe only when its `moov` box (the index) comes before the media data (`mdat`):
//! "faststart" files and fragmented MP4. The common camera file has its `moov` at the end and
//! must be complete on disk first. Anything else is encoded once complete.

/// What the first bytes say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniff {
    /// Not enough bytes yet to tell.
    NeedMore,
    /// Readable as it arrives, once `probe_from` bytes are in (for MP4, the end of `moov`).
    Streamable {
        container: Container,
        probe_from: u64,
    },
    /// Must be complete before ffmpeg reads it.
    AtLastByte(NotStreamable),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    MpegTs,
    Matroska,
    Mp4,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotStreamable {
    /// An MP4 whose media data comes before its index.
    MoovAfterMdat,
    /// Not a container known to be readable front to back.
    OtherFormat,
}

const TS_PACKET: usize = 188;
const TS_SYNC: u8 = 0x47;
const EBML_MAGIC: [u8; 4] = [0x1a, 0x45, 0xdf, 0xa3];
/// Box types that may start an ISO base media (MP4, QuickTime) file.
const MP4_FIRST_BOXES: [&[u8; 4]; 9] = [
    b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pdin", b"uuid",
];

/// Looks at the upload so far. `read_at(offset, len)` returns up to `len` bytes at `offset` of
/// what was received (fewer at its end); `received` and `total` are the byte counts so far and
/// announced.
pub fn sniff(
    received: u64,
    total: u64,
    mut read_at: impl FnMut(u64, usize) -> std::io::Result<Vec<u8>>,
) -> std::io::Result<Sniff> {
    let complete = received >= total;
    let head = read_at(0, 3 * TS_PACKET + 1)?;
    if head.len() < 8 {
        return Ok(if complete {
            Sniff::AtLastByte(NotStreamable::OtherFormat)
        } else {
            Sniff::NeedMore
        });
    }
    if head.starts_with(&EBML_MAGIC) {
        return Ok(Sniff::Streamable {
            container: Container::Matroska,
            probe_from: 0,
        });
    }
    if head[0] == TS_SYNC {
        let packets_seen = head.len() / TS_PACKET;
        let synced = (0..packets_seen.min(3)).all(|packet| head[packet * TS_PACKET] == TS_SYNC);
        if synced && (packets_seen >= 3 || (complete && packets_seen >= 1)) {
            return Ok(Sniff::Streamable {
                container: Container::MpegTs,
                probe_from: 0,
            });
        }
        if synced && !complete {
            return Ok(Sniff::NeedMore);
        }
    }
    if MP4_FIRST_BOXES.iter().any(|kind| head[4..8] == kind[..]) {
        return walk_mp4_boxes(received, total, read_at);
    }
    Ok(Sniff::AtLastByte(NotStreamable::OtherFormat))
}

/// Follows the top-level boxes until `moov` or `mdat`.
fn walk_mp4_boxes(
    received: u64,
    total: u64,
    mut read_at: impl FnMut(u64, usize) -> std::io::Result<Vec<u8>>,
) -> std::io::Result<Sniff> {
    let mut at = 0u64;
    loop {
        if at + 8 > received {
            return Ok(if received >= total {
                Sniff::AtLastByte(NotStreamable::OtherFormat)
            } else {
                Sniff::NeedMore
            });
        }
        let header = read_at(at, 16)?;
        let Some(small) = header.get(0..4) else {
            return Ok(Sniff::NeedMore);
        };
        let kind = &header[4..8];
        let mut size = u64::from(u32::from_be_bytes([small[0], small[1], small[2], small[3]]));
        if size == 1 {
            let Some(large) = header.get(8..16) else {
                return Ok(Sniff::NeedMore);
            };
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(large);
            size = u64::from_be_bytes(bytes);
        }
        match kind {
            b"moov" => {
                let end = if size == 0 {
                    total
                } else {
                    at.saturating_add(size)
                };
                return Ok(Sniff::Streamable {
                    container: Container::Mp4,
                    probe_from: end.min(total),
                });
            }
            b"mdat" => return Ok(Sniff::AtLastByte(NotStreamable::MoovAfterMdat)),
            // A fragment before any index: not something ffmpeg can start from.
            b"moof" => return Ok(Sniff::AtLastByte(NotStreamable::OtherFormat)),
            _ => {}
        }
        if size < 8 {
            // 0 means "to the end of the file" and anything below 8 is malformed: no index
            // follows in either case.
            return Ok(Sniff::AtLastByte(NotStreamable::OtherFormat));
        }
        at = at.saturating_add(size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sniff_bytes(bytes: &[u8], total: u64) -> Sniff {
        sniff(bytes.len() as u64, total, |offset, len| {
            let start = (offset as usize).min(bytes.len());
            let end = start.saturating_add(len).min(bytes.len());
            Ok(bytes[start..end].to_vec())
        })
        .unwrap()
    }

    fn mp4_box(kind: &[u8; 4], body_len: usize) -> Vec<u8> {
        let mut bytes = ((body_len + 8) as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(kind);
        bytes.extend(std::iter::repeat_n(0u8, body_len));
        bytes
    }

    #[test]
    fn faststart_mp4_streams_once_its_moov_is_in() {
        let mut file = mp4_box(b"ftyp", 16);
        file.extend(mp4_box(b"free", 8));
        let moov_end = file.len() + 108;
        file.extend(mp4_box(b"moov", 100));
        file.extend(mp4_box(b"mdat", 1000));
        assert_eq!(
            sniff_bytes(&file, file.len() as u64),
            Sniff::Streamable {
                container: Container::Mp4,
                probe_from: moov_end as u64
            }
        );
        // Only the ftyp so far: wait.
        assert_eq!(sniff_bytes(&file[..30], file.len() as u64), Sniff::NeedMore);
    }

    #[test]
    fn mp4_with_moov_at_the_end_waits_for_the_last_byte() {
        let mut file = mp4_box(b"ftyp", 16);
        file.extend(mp4_box(b"mdat", 1000));
        file.extend(mp4_box(b"moov", 100));
        assert_eq!(
            sniff_bytes(&file[..40], file.len() as u64),
            Sniff::AtLastByte(NotStreamable::MoovAfterMdat)
        );
    }

    #[test]
    fn large_box_sizes_are_followed() {
        let mut file = mp4_box(b"ftyp", 8);
        let mut wide = 1u32.to_be_bytes().to_vec();
        wide.extend_from_slice(b"free");
        wide.extend_from_slice(&24u64.to_be_bytes());
        wide.extend_from_slice(&[0u8; 8]);
        file.extend(wide);
        file.extend(mp4_box(b"moov", 4));
        assert!(matches!(
            sniff_bytes(&file, file.len() as u64),
            Sniff::Streamable {
                container: Container::Mp4,
                ..
            }
        ));
    }

    #[test]
    fn ts_and_matroska_stream_from_the_start() {
        let mut ts = vec![0u8; TS_PACKET * 4];
        for packet in 0..4 {
            ts[packet * TS_PACKET] = TS_SYNC;
        }
        assert_eq!(
            sniff_bytes(&ts, 100_000),
            Sniff::Streamable {
                container: Container::MpegTs,
                probe_from: 0
            }
        );
        assert_eq!(sniff_bytes(&ts[..200], 100_000), Sniff::NeedMore);
        let mut mkv = EBML_MAGIC.to_vec();
        mkv.extend([0u8; 60]);
        assert_eq!(
            sniff_bytes(&mkv, 100_000),
            Sniff::Streamable {
                container: Container::Matroska,
                probe_from: 0
            }
        );
    }

    #[test]
    fn other_bytes_wait_for_the_last_byte() {
        assert_eq!(
            sniff_bytes(b"RIFF\x00\x00\x00\x00AVI LIST", 1000),
            Sniff::AtLastByte(NotStreamable::OtherFormat)
        );
        let mut fake_ts = vec![0u8; TS_PACKET * 4];
        fake_ts[0] = TS_SYNC;
        assert_eq!(
            sniff_bytes(&fake_ts, 1000),
            Sniff::AtLastByte(NotStreamable::OtherFormat)
        );
        assert_eq!(sniff_bytes(b"abc", 1000), Sniff::NeedMore);
        assert_eq!(
            sniff_bytes(b"abc", 3),
            Sniff::AtLastByte(NotStreamable::OtherFormat)
        );
    }
}
