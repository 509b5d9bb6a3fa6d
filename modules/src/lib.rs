//! Business modules of xfhub, each a routed consumer of the bus whose effects commit in the same
//! transaction as its ack, so that a redelivered message has no second effect.
