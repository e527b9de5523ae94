//! r1-learner
