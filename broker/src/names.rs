//! Server-generated names: `amq.gen-…` queues and `amq.ctag-…` consumer tags, made of 128
//! random bits in URL-safe base64 (as RabbitMQ's look).

pub fn generate(prefix: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits = uuid::Uuid::new_v4().as_u128();
    let mut name = String::with_capacity(prefix.len() + 22);
    name.push_str(prefix);
    for i in 0..22 {
        let index = ((bits >> (i * 6)) & 63) as usize;
        name.push(char::from(ALPHABET[index]));
    }
    name
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_have_prefix_and_differ() {
        let a = super::generate("amq.gen-");
        let b = super::generate("amq.gen-");
        assert!(a.starts_with("amq.gen-"));
        assert_eq!(a.len(), "amq.gen-".len() + 22);
        assert_ne!(a, b);
    }
}
