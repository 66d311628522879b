pub mod porcupine;
pub mod timed;
