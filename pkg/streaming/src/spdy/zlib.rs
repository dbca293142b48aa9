//! SPDY/3 header-block compression: one zlib stream per direction for the whole session,
//! primed with the SPDY dictionary, each header block ending with a sync flush (as Go's
//! `spdy.Framer` does, which is what client-go's spdystream speaks).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::dictionary::DICTIONARY;

/// A header-block (de)compression failure: the session cannot continue after one.
#[derive(Debug, thiserror::Error)]
#[error("spdy header compression: {0}")]
pub struct ZlibError(String);

/// Compresses the header blocks one side sends.
pub struct HeaderCompressor {
    z: Compress,
}

impl HeaderCompressor {
    pub fn new() -> Result<Self, ZlibError> {
        let mut z = Compress::new(Compression::best(), true);
        z.set_dictionary(DICTIONARY)
            .map_err(|e| ZlibError(format!("set dictionary: {e}")))?;
        Ok(Self { z })
    }

    /// Compresses one header block, ending it with a sync flush so that the peer can
    /// decode it on its own.
    pub fn compress(&mut self, block: &[u8]) -> Result<Vec<u8>, ZlibError> {
        let mut out = Vec::with_capacity(block.len() + 64);
        let start_in = self.z.total_in();
        loop {
            let consumed = usize::try_from(self.z.total_in() - start_in)
                .map_err(|e| ZlibError(e.to_string()))?;
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            self.z
                .compress_vec(&block[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| ZlibError(format!("compress: {e}")))?;
            let consumed = self.z.total_in() - start_in;
            // Done when all input is in and the flush did not fill the output buffer.
            if consumed as usize == block.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// Decompresses the header blocks the other side sends.
pub struct HeaderDecompressor {
    z: Decompress,
}

impl HeaderDecompressor {
    pub fn new() -> Self {
        Self {
            z: Decompress::new(true),
        }
    }

    /// Decompresses one header block (all of `data` must be consumed).
    pub fn decompress(&mut self, data: &[u8]) -> Result<Vec<u8>, ZlibError> {
        let mut out = Vec::with_capacity(data.len() * 4 + 64);
        let start_in = self.z.total_in();
        loop {
            let consumed = usize::try_from(self.z.total_in() - start_in)
                .map_err(|e| ZlibError(e.to_string()))?;
            if out.capacity() - out.len() < 256 {
                out.reserve(1024);
            }
            let progress = (self.z.total_in(), self.z.total_out());
            let res = self
                .z
                .decompress_vec(&data[consumed..], &mut out, FlushDecompress::Sync);
            let status = match res {
                Ok(status) => status,
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| ZlibError(format!("set dictionary: {e}")))?;
                    continue;
                }
                Err(e) => return Err(ZlibError(format!("decompress: {e}"))),
            };
            let consumed = (self.z.total_in() - start_in) as usize;
            match status {
                Status::StreamEnd => return Ok(out),
                _ if consumed == data.len() && out.len() < out.capacity() => return Ok(out),
                Status::BufError if consumed == data.len() => return Ok(out),
                _ if progress == (self.z.total_in(), self.z.total_out()) => {
                    return Err(ZlibError("decompress: no progress".into()));
                }
                _ => {}
            }
        }
    }
}

impl Default for HeaderDecompressor {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_shares_one_context_per_direction() {
        let mut c = HeaderCompressor::new().unwrap();
        let mut d = HeaderDecompressor::new();
        let first = b"\x00\x00\x00\x01\x00\x00\x00\x0astreamtype\x00\x00\x00\x05error".to_vec();
        let a = c.compress(&first).unwrap();
        // A zlib header with FDICT and the dictionary's Adler-32, as Go expects.
        assert_eq!(a[0], 0x78);
        assert_eq!(a[1] & 0x20, 0x20);
        assert_eq!(&a[2..6], &[0xe3, 0xc6, 0xa7, 0xc2]);
        assert_eq!(&a[a.len() - 4..], &[0x00, 0x00, 0xff, 0xff]);
        assert_eq!(d.decompress(&a).unwrap(), first);
        let second = b"\x00\x00\x00\x00".to_vec();
        let b = c.compress(&second).unwrap();
        assert_ne!(b[0], 0x78, "the second block continues the same stream");
        assert_eq!(d.decompress(&b).unwrap(), second);
        let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let z = c.compress(&big).unwrap();
        assert_eq!(d.decompress(&z).unwrap(), big);
    }
}
