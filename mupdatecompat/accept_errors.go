package mupdatecompat

import "syscall"

// errTooManyFiles is the accept error that passes when connections close;
// Serve backs off on it instead of giving up.
var errTooManyFiles = syscall.EMFILE
