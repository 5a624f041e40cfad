//! Feeds arbitrary bytes to the ring decoders, as a hostile peer would write them into shared
//! memory. Neither may panic, and whatever one accepts must be canonical: encoding the decoded
//! message again, with the decoded tag, gives back exactly the input, at the length
//! `request_len`/`response_len` predict. A directory listing must iterate to its end.
//!
//! The seed corpus in `corpus/ring_decode` holds one valid record per request opcode and
//! response kind (`cargo run -p btfuse-core --example ring_corpus -- fuzz/corpus/ring_decode`).

#![no_main]

use btfuse_core::ring::{
    DirentList, EncodeError, Response, decode_request, decode_response, encode_request,
    encode_response, peek_header, request_len, response_len,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let header = peek_header(data);
    let mut out = vec![0; data.len()];
    if let Ok((tag, request)) = decode_request(data) {
        let header = header.expect("an accepted record has a valid header");
        assert_eq!((header.tag, header.opcode), (tag, request.opcode()));
        assert_eq!(request_len(&request), data.len());
        assert_eq!(encode_request(tag, &request, &mut out), Ok(data.len()));
        assert_eq!(out, data, "{request:?} does not re-encode to its bytes");
        let short = &mut out[..data.len() - 1];
        let needed = EncodeError::BufferTooSmall { needed: data.len() };
        assert_eq!(encode_request(tag, &request, short), Err(needed));
    }
    if let Ok((tag, response)) = decode_response(data) {
        let header = header.expect("an accepted record has a valid header");
        assert_eq!((header.tag, header.opcode), (tag, response.kind()));
        assert_eq!(response_len(&response), data.len());
        assert_eq!(encode_response(tag, &response, &mut out), Ok(data.len()));
        assert_eq!(out, data, "{response:?} does not re-encode to its bytes");
        if let Response::Dirents(list) = response {
            let walked: usize = list
                .iter()
                .map(|e| DirentList::entry_len(e.name.len()))
                .sum();
            assert_eq!(walked, list.as_bytes().len());
        }
    }
});
