//! Bytes accepted by `write()` that the socket or pipe has not taken yet, sent with one vectored
//! write.

use std::collections::VecDeque;

use pyo3::Python;

use super::buffer::Chunk;

/// How many chunks one vectored write hands the kernel at most (well under IOV_MAX).
const MAX_IOVECS: usize = 64;

#[derive(Default)]
pub struct WriteQueue {
    /// Each chunk with how much of it was already sent.
    chunks: VecDeque<(Chunk, usize)>,
    size: usize,
}

impl WriteQueue {
    /// Bytes still to send (`get_write_buffer_size()`).
    pub fn size(&self) -> usize {
        self.size
    }

    pub fn push(&mut self, chunk: Chunk, already_sent: usize, py: Python<'_>) {
        let len = chunk.bytes(py).len() - already_sent;
        if len == 0 {
            return;
        }
        self.size += len;
        self.chunks.push_back((chunk, already_sent));
    }

    /// Drops everything, returning the chunks so that the caller releases them outside borrows.
    pub fn take(&mut self) -> VecDeque<(Chunk, usize)> {
        self.size = 0;
        std::mem::take(&mut self.chunks)
    }

    /// Writes as much as `fd` takes with `vectored` (sendmsg or writev). Ok(true) once the
    /// queue is empty; Err with the errno of a failed write (EAGAIN is not a failure).
    pub fn write(
        &mut self,
        fd: i32,
        py: Python<'_>,
        vectored: fn(i32, &[libc::iovec]) -> Result<usize, i32>,
    ) -> Result<bool, i32> {
        while !self.chunks.is_empty() {
            let iovecs: Vec<libc::iovec> = self
                .chunks
                .iter()
                .take(MAX_IOVECS)
                .map(|(chunk, sent)| {
                    let rest = &chunk.bytes(py)[*sent..];
                    libc::iovec {
                        iov_base: rest.as_ptr() as *mut libc::c_void,
                        iov_len: rest.len(),
                    }
                })
                .collect();
            let total: usize = iovecs.iter().map(|v| v.iov_len).sum();
            let sent = match vectored(fd, &iovecs) {
                Ok(sent) => sent,
                Err(libc::EAGAIN) => return Ok(false),
                Err(errno) => return Err(errno),
            };
            self.advance(sent, py);
            if sent < total {
                return Ok(self.chunks.is_empty());
            }
        }
        Ok(true)
    }

    fn advance(&mut self, mut count: usize, py: Python<'_>) {
        self.size -= count;
        while count > 0 {
            let Some((chunk, sent)) = self.chunks.front_mut() else {
                return;
            };
            let rest = chunk.bytes(py).len() - *sent;
            if count < rest {
                *sent += count;
                return;
            }
            count -= rest;
            self.chunks.pop_front();
        }
    }
}
