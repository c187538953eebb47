package tokens

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// exportedErrors is every exported error of the package, as the observer
// classifies it: a rule's refusal (the caller's doing, OutcomeRefused), a
// refusal of Verify (which has outcomes of its own), or a fault.
var exportedErrors = map[string]struct {
	err  error
	kind string
}{
	"ErrKeyNotFound":     {ErrKeyNotFound, "rule"},
	"ErrRenewalPending":  {ErrRenewalPending, "rule"},
	"ErrOldTokenPending": {ErrOldTokenPending, "rule"},
	"ErrNoOldToken":      {ErrNoOldToken, "rule"},
	"ErrUndoUnavailable": {ErrUndoUnavailable, "rule"},
	"ErrInvalidLink":     {ErrInvalidLink, "rule"},
	"ErrLinkNotFound":    {ErrLinkNotFound, "rule"},
	"ErrLinkUsed":        {ErrLinkUsed, "rule"},
	"ErrLinkExpired":     {ErrLinkExpired, "rule"},
	"ErrNoPendingLink":   {ErrNoPendingLink, "rule"},
	"ErrLinkSealed":      {ErrLinkSealed, "rule"},
	"ErrInvalidKeySpec":  {ErrInvalidKeySpec, "rule"},
	"ErrInvalidOption":   {ErrInvalidOption, "rule"},
	"ErrInvalidLeak":     {ErrInvalidLeak, "rule"},
	"ErrInvalidCursor":   {ErrInvalidCursor, "rule"},
	"ErrNilContext":      {ErrNilContext, "rule"},
	"ErrKeyExists":       {ErrKeyExists, "rule"},

	"ErrInvalidCredentials": {ErrInvalidCredentials, "verify"},
	"ErrMalformedToken":     {ErrMalformedToken, "verify"},
	"ErrTokenRevoked":       {ErrTokenRevoked, "verify"},
	"ErrKeyInactive":        {ErrKeyInactive, "verify"},
	"ErrKeyExpired":         {ErrKeyExpired, "verify"},

	"ErrOutcomeUnknown": {ErrOutcomeUnknown, "fault"},
	"ErrConflict":       {ErrConflict, "fault"},
	"ErrDuplicate":      {ErrDuplicate, "fault"},
}

// wraps are the errors that are also another on purpose.
var wraps = map[error]error{
	ErrMalformedToken: ErrInvalidCredentials,
	ErrTokenRevoked:   ErrInvalidCredentials,
}

func TestEveryExportedErrorIsClassified(t *testing.T) {
	declared := declaredErrors(t)
	var listed []string
	for name := range exportedErrors {
		listed = append(listed, name)
	}
	sort.Strings(listed)
	require.Equal(t, declared, listed, "an exported error is missing from exportedErrors, or gone")

	for name, e := range exportedErrors {
		require.Equal(t, e.kind == "rule", isRuleError(e.err), "%s is classified %q, isRuleError disagrees", name, e.kind)
		// A rule error wrapped by the Manager is still one.
		require.Equal(t, e.kind == "rule", isRuleError(errors.Join(errors.New("context"), e.err)), name)
	}
}

func TestExportedErrorsAreDistinct(t *testing.T) {
	messages := map[string]string{}
	for name, a := range exportedErrors {
		require.True(t, strings.HasPrefix(a.err.Error(), "tokens: "), "%s: %q lacks the package prefix", name, a.err)
		if other, ok := messages[a.err.Error()]; ok {
			t.Errorf("%s and %s have the same message %q", name, other, a.err)
		}
		messages[a.err.Error()] = name
		for other, b := range exportedErrors {
			if name == other {
				continue
			}
			if errors.Is(a.err, b.err) && wraps[a.err] != b.err {
				t.Errorf("%s matches %s", name, other)
			}
		}
	}
}

// declaredErrors returns the names of the exported Err variables that the
// package's non-test files declare.
func declaredErrors(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	var names []string
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		require.NoError(t, err)
		for _, decl := range file.Decls {
			gen, ok := decl.(*ast.GenDecl)
			if !ok || gen.Tok != token.VAR {
				continue
			}
			for _, spec := range gen.Specs {
				for _, id := range spec.(*ast.ValueSpec).Names {
					if strings.HasPrefix(id.Name, "Err") && id.IsExported() {
						names = append(names, id.Name)
					}
				}
			}
		}
	}
	sort.Strings(names)
	return names
}
