//! RabbitMQ definitions JSON model. Filled by the definitions issue; nothing here yet.
