//! Tokenizer and templates against what transformers produced for the same folder.

use std::path::PathBuf;

use r1_model::tokenizer::{Message, R1_TEMPLATE};
use r1_model::{PromptTemplate, TextTokenizer};

fn dir() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/qwen2-tiny")
}

#[test]
fn chat_template_and_encoding_match_transformers() {
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("tokenizer_reference.json")).unwrap()).unwrap();
    let tok = TextTokenizer::from_dir(&dir()).unwrap();
    let msgs: Vec<Message> = serde_json::from_value(r["messages"].clone()).unwrap();
    let text = tok.apply_chat_template(&msgs, true).unwrap();
    assert_eq!(text, r["chat_text"].as_str().unwrap());
    let ids: Vec<u32> = serde_json::from_value(r["chat_ids"].clone()).unwrap();
    assert_eq!(tok.encode(&text).unwrap(), ids);
    assert_eq!(tok.decode(&ids).unwrap(), text);
    assert_eq!(tok.eos_token_id(), tok.token_id("<|im_end|>"));
}

#[test]
fn templates_render() {
    let tok = TextTokenizer::from_dir(&dir()).unwrap();
    let cases = [
        (PromptTemplate::Raw, "2+2?", "2+2?".to_string()),
        (PromptTemplate::R1, "2+2?", R1_TEMPLATE.replace("{prompt}", "2+2?")),
        (PromptTemplate::Chat, "2+2?", "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n".to_string()),
    ];
    for (t, p, want) in cases {
        assert_eq!(tok.render(t, p).unwrap(), want, "{t:?}");
    }
    assert!(R1_TEMPLATE.ends_with("User: {prompt}. Assistant:"));
}

#[test]
fn missing_tokenizer_and_template_are_clear_errors() {
    let empty = tempfile::tempdir().unwrap();
    let e = TextTokenizer::from_dir(empty.path()).unwrap_err().to_string();
    assert!(e.contains("tokenizer.json") && e.contains("does not exist"), "{e}");
    std::fs::copy(dir().join("tokenizer.json"), empty.path().join("tokenizer.json")).unwrap();
    let tok = TextTokenizer::from_dir(empty.path()).unwrap();
    let e = tok.render(PromptTemplate::Chat, "x").unwrap_err().to_string();
    assert!(e.contains("no chat template"), "{e}");
}
