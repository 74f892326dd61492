//! ML-KEM binding input from the network: the `PQGuard-Binding` header, the bind request's
//! encapsulation key and the bind answer. Never panics; a proof that parses round-trips through
//! its header form; a proof made with the right key verifies and one byte of the data changes that.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pqguard_core::bind::{self, BoundHeaders, ClientKey, Covered, Issued, Proof, Secret};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(proof) = Proof::parse(&text) {
        assert_eq!(Proof::parse(&proof.to_header()).as_ref(), Ok(&proof));
    }
    let _ = Issued::from_json(data);
    let secret = Secret { kid: "b1".into(), bytes: vec![7; 32] };
    let digest = bind::sha3(data);
    // The bytes as an encapsulation key: refused cleanly unless they are one.
    let _ = bind::issue(&secret, data, &digest, 10, &[1; bind::BIND_RANDOM_LEN]);
    // A real binding (made once: ML-KEM key generation is the slow part), a proof over the input
    // as the body.
    static BOUND: std::sync::OnceLock<(String, [u8; 32])> = std::sync::OnceLock::new();
    let token = [5u8; 32];
    let (id, key) = BOUND.get_or_init(|| {
        let client = ClientKey::from_seed(&[3; 64]);
        let issued = bind::issue(&secret, &client.encapsulation_key(), &token, 100, &[2; bind::BIND_RANDOM_LEN])
            .expect("a valid key binds");
        let key = client.open(&issued).expect("its own answer opens");
        (issued.id, key)
    });
    let headers = BoundHeaders { authority: Some("edge"), session_id: Some(&text), ..BoundHeaders::default() };
    let covered = Covered { method: "POST", path: "/mcp", headers, body_digest: &digest, token_digest: &token };
    let proof = Proof::parse(&Proof::new(id, key, &covered, 50, &[4; 16]).to_header()).expect("own header");
    assert!(proof.verify(std::slice::from_ref(&secret), &covered, &token, 50, 60).is_ok());
    let mut other = data.to_vec();
    other.push(0);
    let changed = Covered { body_digest: &bind::sha3(&other), ..covered };
    assert!(proof.verify(std::slice::from_ref(&secret), &changed, &token, 50, 60).is_err());
});
