//! Errors, one enum per operation, grouped by who is at fault.

/// Why sealing (encrypting) an attachment failed. Every variant is the
/// caller's or the local system's fault: there is no peer input here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    // --- the caller broke the chunking rules (API misuse) ---
    /// A chunk other than the last is not exactly one chunk size long.
    #[error("chunk {index} is {len} bytes; every chunk but the last must be {chunk_size} bytes")]
    ShortChunk {
        /// Index of the chunk.
        index: u64,
        /// Its length.
        len: usize,
        /// The chunk size.
        chunk_size: u32,
    },
    /// A chunk is longer than the chunk size.
    #[error("chunk {index} is {len} bytes, more than the chunk size {chunk_size}")]
    LongChunk {
        /// Index of the chunk.
        index: u64,
        /// Its length.
        len: usize,
        /// The chunk size.
        chunk_size: u32,
    },
    /// The last chunk is empty but is not the only chunk (an attachment
    /// whose size is a multiple of the chunk size ends with a full chunk).
    #[error("chunk {index} is empty: only the chunk of an empty attachment may be")]
    EmptyLastChunk {
        /// Index of the chunk.
        index: u64,
    },
    /// A chunk was given after the last one.
    #[error("a chunk was given after the last one")]
    AfterLast,
    /// `finish` was called before the last chunk was sealed.
    #[error("the last chunk has not been sealed")]
    Unfinished,
    /// More chunks than a 32-bit chunk counter can number.
    #[error("more than 2^32 chunks: use a larger chunk size")]
    TooManyChunks,
    // --- the local system ---
    /// The random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// Reading the plaintext or writing the ciphertext failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a ciphertext chunk or a whole attachment was refused. The variants
/// name the chunk index where there is one, so a receiver can ask for just
/// that chunk again and log which one it was; to a peer, send only
/// [`OpenError::code`] (one opaque answer for every failed check).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    // --- the ciphertext is not the one the metadata describes (the sender
    //     or a relay on the way is at fault; the chunk can be re-requested) ---
    /// The chunk's hash does not lead to the ciphertext root with its
    /// inclusion proof: a flipped bit, a chunk of another attachment, or a
    /// chunk of another position. Detected without the key.
    #[error("chunk {index} does not match the ciphertext root")]
    ChunkMismatch {
        /// Index of the chunk.
        index: u64,
    },
    /// The chunk has the wrong length for its position (a truncated final
    /// chunk, or a full chunk where the last, shorter one belongs).
    #[error("chunk {index} is {actual} bytes; at this position it must be {expected}")]
    ChunkLength {
        /// Index of the chunk.
        index: u64,
        /// The length its position requires.
        expected: u64,
        /// Its length.
        actual: u64,
    },
    /// A chunk index at or beyond the declared number of chunks (chunks
    /// beyond the declared size).
    #[error("chunk {index} is beyond the declared {chunks} chunks")]
    ChunkBeyondEnd {
        /// The index given.
        index: u64,
        /// The declared number of chunks.
        chunks: u64,
    },
    /// The ciphertext ended before the declared size.
    #[error("the ciphertext ended after {received} of the declared {declared} bytes")]
    Truncated {
        /// The declared ciphertext size.
        declared: u64,
        /// Bytes received.
        received: u64,
    },
    /// The ciphertext goes on past the declared size.
    #[error("the ciphertext goes on past the declared {declared} bytes")]
    Oversize {
        /// The declared ciphertext size.
        declared: u64,
    },
    /// The whole ciphertext's root is not the declared root (a stream read
    /// without proofs: the chunks were all well-formed but not these).
    #[error("the ciphertext does not have the declared root")]
    RootMismatch,
    // --- the ciphertext is as declared but does not open (the sender's
    //     descriptor is wrong; re-requesting the chunk does not help) ---
    /// The chunk does not decrypt under the descriptor's key and nonce
    /// prefix at its position: a wrong key, or (when its hash was not
    /// checked first) an altered chunk. A chunk that matched the root and
    /// fails here means the key does not belong to this ciphertext.
    #[error("chunk {index} does not decrypt under the attachment key")]
    Undecryptable {
        /// Index of the chunk.
        index: u64,
    },
    /// The plaintext's SHA-256 is not the signed content digest.
    #[error("the plaintext does not have the signed content digest")]
    DigestMismatch,
    // --- the local system ---
    /// Reading the ciphertext or writing the plaintext failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl OpenError {
    /// A stable name for logs and test vectors (`spec/vectors/attachments`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::ChunkMismatch { .. } => "chunk-mismatch",
            Self::ChunkLength { .. } => "chunk-length",
            Self::ChunkBeyondEnd { .. } => "chunk-beyond-end",
            Self::Truncated { .. } => "truncated",
            Self::Oversize { .. } => "oversize",
            Self::RootMismatch => "root-mismatch",
            Self::Undecryptable { .. } => "undecryptable",
            Self::DigestMismatch => "digest-mismatch",
            Self::Io(_) => "io",
        }
    }

    /// The chunk index the error names, if any.
    pub fn chunk(&self) -> Option<u64> {
        match self {
            Self::ChunkMismatch { index }
            | Self::ChunkLength { index, .. }
            | Self::ChunkBeyondEnd { index, .. }
            | Self::Undecryptable { index } => Some(*index),
            _ => None,
        }
    }

    /// What a peer is told: one opaque answer for every failed check
    /// (`"unauthentic"`), `"too-large"` for data past the declared size,
    /// `"unavailable"` for a local I/O failure. The detail stays in the
    /// local log.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Oversize { .. } | Self::ChunkBeyondEnd { .. } => "too-large",
            Self::Io(_) => "unavailable",
            _ => "unauthentic",
        }
    }
}

/// Why a descriptor, relay metadata or an inclusion proof does not decode.
/// The input came from a peer (inside a signed body, or on the wire) or
/// from the local store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    // --- the encoding ---
    /// Longer than the limit for its kind, checked before parsing.
    #[error("{len} bytes, more than the limit of {max}")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a CBOR map of the schema (wrong type, unknown, missing or
    /// duplicate key, trailing bytes).
    #[error("not of the schema: {0}")]
    Schema(String),
    /// Well-formed, but not in deterministic encoding (RFC 8949 §4.2.1).
    #[error("not deterministically encoded")]
    NotDeterministic,
    // --- a field ---
    /// A field's value is out of its range.
    #[error("{field}: {reason}")]
    Field {
        /// The CBOR key.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The sizes contradict each other: the ciphertext size is not the one
    /// the plaintext size and chunk size give (or no plaintext size gives
    /// it).
    #[error("ciphertext-size {ciphertext} does not fit size/chunk-size")]
    Sizes {
        /// The declared ciphertext size.
        ciphertext: u64,
    },
    /// An inclusion proof is not a multiple of 32 bytes, or too long.
    #[error("an inclusion proof of {len} bytes")]
    ProofLength {
        /// Its length.
        len: usize,
    },
}

impl DecodeError {
    /// A stable name for test vectors.
    pub fn name(&self) -> &'static str {
        match self {
            Self::TooLong { .. } => "too-long",
            Self::Schema(_) => "schema",
            Self::NotDeterministic => "not-deterministic",
            Self::Field { .. } => "field",
            Self::Sizes { .. } => "sizes",
            Self::ProofLength { .. } => "proof-length",
        }
    }
}
