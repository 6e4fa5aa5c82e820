//! permessage-deflate (RFC 7692): the offer a browser makes, the answer we
//! give, and compressing and inflating one message.
//!
//! We always answer with `server_no_context_takeover` and
//! `client_no_context_takeover`: every message is compressed on its own, in
//! both directions. That costs some ratio on small frames, and buys the two
//! things a broadcast server needs: a broadcast frame is compressed **once**
//! and the same bytes go to every client that negotiated compression, and no
//! connection keeps a compressor or a 32 KiB window between messages, so an
//! idle connection costs no more than without compression.
//!
//! The deflate itself is `flate2` (on the pure-Rust `zlib-rs`).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The extension's name in `Sec-WebSocket-Extensions`.
const NAME: &str = "permessage-deflate";

/// What we answer to an acceptable offer.
pub const ANSWER: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// The empty stored block a sync flush ends with, which RFC 7692 section
/// 7.2.1 removes from each message and the receiver puts back.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Whether a `Sec-WebSocket-Extensions` header value offers permessage-deflate
/// with parameters we can honour: the first such offer wins; an offer that
/// asks us for a window smaller than 32 KiB, or has a parameter we do not
/// know or twice, is passed over (RFC 7692 section 5).
///
/// ```
/// use edge::deflate::accepts_offer;
/// assert!(accepts_offer("permessage-deflate; client_max_window_bits"));
/// assert!(!accepts_offer("permessage-deflate; server_max_window_bits=10"));
/// assert!(accepts_offer("x-webkit-deflate-frame, permessage-deflate"));
/// ```
pub fn accepts_offer(header: &str) -> bool {
    header.split(',').any(|offer| {
        let mut parts = offer.split(';').map(str::trim);
        if !parts
            .next()
            .is_some_and(|name| name.eq_ignore_ascii_case(NAME))
        {
            return false;
        }
        let mut seen: Vec<String> = Vec::new();
        parts.all(|param| {
            let (key, value) = match param.split_once('=') {
                Some((key, value)) => (key.trim(), Some(value.trim().trim_matches('"'))),
                None => (param, None),
            };
            let key = key.to_ascii_lowercase();
            if seen.contains(&key) {
                return false;
            }
            seen.push(key.clone());
            match (key.as_str(), value) {
                ("server_no_context_takeover" | "client_no_context_takeover", None) => true,
                // We compress with the full window, so we cannot promise less.
                ("server_max_window_bits", Some(bits)) => bits == "15",
                ("client_max_window_bits", None) => true,
                ("client_max_window_bits", Some(bits)) => {
                    bits.parse::<u8>().is_ok_and(|b| (8..=15).contains(&b))
                }
                _ => false,
            }
        })
    })
}

/// Compresses one message's payload as RFC 7692 section 7.2.1 says: raw
/// deflate, sync-flushed, without the trailing empty block.
pub fn compress(payload: &[u8]) -> Vec<u8> {
    let mut compressor = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(payload.len() / 2 + 64);
    loop {
        let consumed = compressor.total_in() as usize;
        // `compress_vec` writes only into spare capacity.
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(64));
        }
        compressor
            .compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync)
            .expect("deflating into memory cannot fail");
        // Done when everything went in and the flush ended with room to spare
        // (a full buffer may hold a flush that is not finished yet).
        if compressor.total_in() as usize == payload.len()
            && out.len() < out.capacity()
            && out.ends_with(&TAIL)
        {
            break;
        }
    }
    out.truncate(out.len() - TAIL.len());
    out
}

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates to more than the limit (a zip bomb, or just too big).
    TooBig,
    /// It is not valid deflate data.
    Corrupt,
}

/// Inflates one message compressed by a client, refusing to produce more than
/// `limit` bytes: the limit applies to what the message becomes, not to what
/// it was on the wire.
pub fn inflate(compressed: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    let mut inflater = Decompress::new(false);
    let mut input = Vec::with_capacity(compressed.len() + TAIL.len());
    input.extend_from_slice(compressed);
    input.extend_from_slice(&TAIL);
    let mut out: Vec<u8> = Vec::with_capacity((compressed.len() * 4).min(limit + 1).max(64));
    loop {
        let consumed = inflater.total_in() as usize;
        if out.len() == out.capacity() {
            out.reserve((out.capacity()).min(limit + 1 - out.len()).max(64));
        }
        let before = (inflater.total_in(), inflater.total_out());
        let status = inflater
            .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            .map_err(|_| InflateError::Corrupt)?;
        if out.len() > limit {
            return Err(InflateError::TooBig);
        }
        let all_read = inflater.total_in() as usize == input.len();
        let progress = (inflater.total_in(), inflater.total_out()) != before;
        match status {
            Status::StreamEnd => return Ok(out),
            _ if all_read && out.len() < out.capacity() => return Ok(out),
            _ if !progress && out.len() < out.capacity() => return Err(InflateError::Corrupt),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_we_compress_inflates_back() {
        for text in [
            &b""[..],
            b"hello",
            br#"{"type":"presence","server":"1","data":{"uid":"2","status":"idle"}}"#,
            &[b'a'; 100_000][..],
        ] {
            let packed = compress(text);
            assert!(!packed.ends_with(&TAIL));
            assert_eq!(inflate(&packed, 200_000).unwrap(), text);
        }
    }

    #[test]
    fn the_rfc_example_inflates() {
        // RFC 7692 section 7.2.3.1: "Hello" compressed without context takeover.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate(&hello, 100).unwrap(), b"Hello");
    }

    #[test]
    fn a_bomb_is_refused_at_the_limit_and_garbage_is_corrupt() {
        let bomb = compress(&vec![0u8; 10 * 1024 * 1024]);
        assert!(bomb.len() < 20_000, "ten megabytes of zeros compress well");
        assert_eq!(inflate(&bomb, 64 * 1024), Err(InflateError::TooBig));
        assert_eq!(
            inflate(&[0xff, 0xff, 0xff, 0xff, 0xff], 1024),
            Err(InflateError::Corrupt)
        );
    }

    #[test]
    fn offers_are_read_as_rfc_7692_says() {
        assert!(accepts_offer("permessage-deflate"));
        assert!(accepts_offer(
            "permessage-deflate; client_max_window_bits; server_no_context_takeover"
        ));
        assert!(accepts_offer(
            "Permessage-Deflate; server_max_window_bits=15"
        ));
        assert!(!accepts_offer(
            "permessage-deflate; server_max_window_bits=9"
        ));
        assert!(!accepts_offer("permessage-deflate; unknown_param"));
        assert!(!accepts_offer(
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover"
        ));
        assert!(accepts_offer(
            "permessage-deflate; server_max_window_bits=9, permessage-deflate"
        ));
        assert!(!accepts_offer("x-webkit-deflate-frame"));
    }
}
