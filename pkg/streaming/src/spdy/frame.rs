//! SPDY/3 frames: their wire encoding and decoding (control frames with their compressed
//! header blocks, and data frames), as in the SPDY/3 draft and spdystream's `spdy` package.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::zlib::{HeaderCompressor, HeaderDecompressor, ZlibError};

/// The SPDY version this speaks.
const VERSION: u16 = 3;
/// FLAG_FIN on a data frame, SYN_STREAM, SYN_REPLY or HEADERS.
pub const FLAG_FIN: u8 = 0x01;
/// The largest data-frame payload (24-bit length).
pub const MAX_DATA: usize = (1 << 24) - 1;
/// RST_STREAM status: PROTOCOL_ERROR.
pub const RST_PROTOCOL_ERROR: u32 = 1;
/// RST_STREAM status: CANCEL (what spdystream's `Stream.Reset` sends).
pub const RST_CANCEL: u32 = 5;

/// A header block: lowercase names, values (several values joined by NUL, as on the wire).
pub type Headers = Vec<(String, String)>;

/// The first value of a header (names are compared case-insensitively).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.split('\0').next().unwrap_or_default())
}

/// One SPDY/3 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_id: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    /// (flags, id, value) entries.
    Settings {
        flags: u8,
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Bytes,
    },
    /// A control frame of a type SPDY/3 does not define (ignored, as the draft says).
    Unknown {
        frame_type: u16,
    },
}

/// A frame that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("spdy connection: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Zlib(#[from] ZlibError),
    #[error("invalid spdy frame: {0}")]
    Invalid(String),
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn encode_headers(headers: &Headers) -> Vec<u8> {
    let mut block = Vec::new();
    put_u32(&mut block, headers.len() as u32);
    for (name, value) in headers {
        put_u32(&mut block, name.len() as u32);
        block.extend_from_slice(name.to_ascii_lowercase().as_bytes());
        put_u32(&mut block, value.len() as u32);
        block.extend_from_slice(value.as_bytes());
    }
    block
}

fn control(frame_type: u16, flags: u8, body: &[u8]) -> Result<Vec<u8>, FrameError> {
    if body.len() > MAX_DATA {
        return Err(FrameError::Invalid(format!(
            "control frame of {} bytes",
            body.len()
        )));
    }
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&frame_type.to_be_bytes());
    put_u32(&mut out, (u32::from(flags) << 24) | body.len() as u32);
    out.extend_from_slice(body);
    Ok(out)
}

/// Encodes a frame (header blocks go through the session's one compressor).
pub fn encode(frame: &Frame, z: &mut HeaderCompressor) -> Result<Vec<u8>, FrameError> {
    let mut body = Vec::new();
    match frame {
        Frame::SynStream {
            stream_id,
            associated_id,
            priority,
            flags,
            headers,
        } => {
            put_u32(&mut body, stream_id & 0x7fff_ffff);
            put_u32(&mut body, associated_id & 0x7fff_ffff);
            body.push((priority & 0x07) << 5);
            body.push(0);
            body.extend(z.compress(&encode_headers(headers))?);
            control(1, *flags, &body)
        }
        Frame::SynReply {
            stream_id,
            flags,
            headers,
        }
        | Frame::Headers {
            stream_id,
            flags,
            headers,
        } => {
            put_u32(&mut body, stream_id & 0x7fff_ffff);
            body.extend(z.compress(&encode_headers(headers))?);
            let kind = if matches!(frame, Frame::SynReply { .. }) {
                2
            } else {
                8
            };
            control(kind, *flags, &body)
        }
        Frame::RstStream { stream_id, status } => {
            put_u32(&mut body, stream_id & 0x7fff_ffff);
            put_u32(&mut body, *status);
            control(3, 0, &body)
        }
        Frame::Settings { flags, entries } => {
            put_u32(&mut body, entries.len() as u32);
            for (f, id, value) in entries {
                put_u32(&mut body, (u32::from(*f) << 24) | (id & 0x00ff_ffff));
                put_u32(&mut body, *value);
            }
            control(4, *flags, &body)
        }
        Frame::Ping { id } => control(6, 0, &id.to_be_bytes()),
        Frame::GoAway {
            last_good_stream_id,
            status,
        } => {
            put_u32(&mut body, last_good_stream_id & 0x7fff_ffff);
            put_u32(&mut body, *status);
            control(7, 0, &body)
        }
        Frame::WindowUpdate { stream_id, delta } => {
            put_u32(&mut body, stream_id & 0x7fff_ffff);
            put_u32(&mut body, delta & 0x7fff_ffff);
            control(9, 0, &body)
        }
        Frame::Data {
            stream_id,
            flags,
            data,
        } => {
            if data.len() > MAX_DATA {
                return Err(FrameError::Invalid(format!(
                    "data frame of {} bytes",
                    data.len()
                )));
            }
            let mut out = Vec::with_capacity(8 + data.len());
            put_u32(&mut out, stream_id & 0x7fff_ffff);
            put_u32(&mut out, (u32::from(*flags) << 24) | data.len() as u32);
            out.extend_from_slice(data);
            Ok(out)
        }
        Frame::Unknown { frame_type } => control(*frame_type, 0, &[]),
    }
}

fn be32(b: &[u8], at: usize) -> Result<u32, FrameError> {
    b.get(at..at + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| FrameError::Invalid("frame too short".into()))
}

fn decode_headers(block: &[u8]) -> Result<Headers, FrameError> {
    let count = be32(block, 0)? as usize;
    let mut at = 4;
    let mut headers = Vec::with_capacity(count.min(64));
    let take = |at: &mut usize| -> Result<String, FrameError> {
        let len = be32(block, *at)? as usize;
        let s = block
            .get(*at + 4..*at + 4 + len)
            .ok_or_else(|| FrameError::Invalid("header block too short".into()))?;
        *at += 4 + len;
        String::from_utf8(s.to_vec()).map_err(|_| FrameError::Invalid("header not UTF-8".into()))
    };
    for _ in 0..count {
        let name = take(&mut at)?;
        let value = take(&mut at)?;
        headers.push((name.to_ascii_lowercase(), value));
    }
    Ok(headers)
}

/// Reads one frame; `None` at a clean end of the connection (between frames).
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    z: &mut HeaderDecompressor,
) -> Result<Option<Frame>, FrameError> {
    let mut head = [0u8; 8];
    let n = r.read(&mut head).await?;
    if n == 0 {
        return Ok(None);
    }
    r.read_exact(&mut head[n..]).await?;
    let word = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let flags = head[4];
    let len = (u32::from_be_bytes([0, head[5], head[6], head[7]])) as usize;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    if word & 0x8000_0000 == 0 {
        return Ok(Some(Frame::Data {
            stream_id: word,
            flags,
            data: Bytes::from(body),
        }));
    }
    let version = ((word >> 16) & 0x7fff) as u16;
    if version != VERSION {
        return Err(FrameError::Invalid(format!(
            "unsupported SPDY version {version}"
        )));
    }
    let frame_type = (word & 0xffff) as u16;
    let sid = |at| be32(&body, at).map(|v| v & 0x7fff_ffff);
    let frame = match frame_type {
        1 => {
            let stream_id = sid(0)?;
            let associated_id = sid(4)?;
            let priority = body.get(8).copied().unwrap_or_default() >> 5;
            let block = body.get(10..).unwrap_or_default();
            Frame::SynStream {
                stream_id,
                associated_id,
                priority,
                flags,
                headers: decode_headers(&z.decompress(block)?)?,
            }
        }
        2 | 8 => {
            let stream_id = sid(0)?;
            let block = body.get(4..).unwrap_or_default();
            let headers = decode_headers(&z.decompress(block)?)?;
            if frame_type == 2 {
                Frame::SynReply {
                    stream_id,
                    flags,
                    headers,
                }
            } else {
                Frame::Headers {
                    stream_id,
                    flags,
                    headers,
                }
            }
        }
        3 => Frame::RstStream {
            stream_id: sid(0)?,
            status: be32(&body, 4)?,
        },
        4 => {
            let count = be32(&body, 0)? as usize;
            let mut entries = Vec::with_capacity(count.min(16));
            for i in 0..count {
                let fid = be32(&body, 4 + i * 8)?;
                entries.push((
                    (fid >> 24) as u8,
                    fid & 0x00ff_ffff,
                    be32(&body, 8 + i * 8)?,
                ));
            }
            Frame::Settings { flags, entries }
        }
        6 => Frame::Ping {
            id: be32(&body, 0)?,
        },
        7 => Frame::GoAway {
            last_good_stream_id: sid(0)?,
            status: be32(&body, 4).unwrap_or_default(),
        },
        9 => Frame::WindowUpdate {
            stream_id: sid(0)?,
            delta: be32(&body, 4)? & 0x7fff_ffff,
        },
        other => Frame::Unknown { frame_type: other },
    };
    Ok(Some(frame))
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
