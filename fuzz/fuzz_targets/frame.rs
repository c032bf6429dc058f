//! Frame decoding: any bytes a peer can send, read as request frames and as
//! response frames. Decoding may fail, never panic or allocate without
//! bound; what decodes must encode again and decode to the same message.

#![no_main]

use libfuzzer_sys::fuzz_target;
use signet_proto::codec;
use signet_proto::frame::read_frame;
use signet_proto::{Request, Response};

fuzz_target!(|data: &[u8]| {
    // A stream of frames, as the agent and the client read them.
    let mut cur = std::io::Cursor::new(data);
    while let Ok(req) = read_frame::<_, Request>(&mut cur) {
        let again = codec::encode(&req).expect("a decoded request encodes");
        codec::decode::<Request>(&again).expect("an encoded request decodes");
    }
    let mut cur = std::io::Cursor::new(data);
    while read_frame::<_, Response>(&mut cur).is_ok() {}
    // One message body, without the length prefix.
    let _ = codec::decode::<Request>(data);
    let _ = codec::decode::<Response>(data);
});
