package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAttackBackupHelpPrintsToken: "scrip mint backup" took its --token
// default from $SCRIP_ADMIN_TOKEN, so "scrip mint backup -h" printed the
// admin token (which creates money) into a terminal, a log or a bug
// report, as "scrip voucher" no longer does.
//
// Defence: no command prints a secret from the environment. FAILED
// before the fix.
func TestAttackBackupHelpPrintsToken(t *testing.T) {
	t.Setenv("SCRIP_ADMIN_TOKEN", "0123456789abcdef-secret-admin-token")
	for _, args := range [][]string{{"mint", "backup"}, {"keyset", "list"}, {"keyset", "rotate"}, {"keyset", "revoke"}, {"audit"}} {
		help := cliHelp(t, args...)
		require.NotContains(t, help, "secret-admin-token", "%v", args)
		require.Contains(t, help, "visible to other local users", "%v --token", args)
	}
}
