package tokens_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The tests that read the library's source instead of running it: rules
// that no call can show broken (R12, S1, S3), checked on the non-test files
// of the root package and of store/. They find functions by name, so files
// can move.

// timeReaders read the wall clock; timeWaiters wait on it.
var (
	timeReaders = map[string]bool{"Now": true, "Since": true, "Until": true}
	timeWaiters = map[string]bool{"Sleep": true, "NewTimer": true, "NewTicker": true, "After": true, "AfterFunc": true, "Tick": true}
)

// timeUse is a reference to a function of package time in library code.
type timeUse struct {
	path, fn, name, pos string
}

// timeUses returns every use of the functions of package time that read
// or wait on the wall clock in the library's non-test files, with the
// function that holds it.
func timeUses(t *testing.T) []timeUse {
	t.Helper()
	files := libraryFiles(t)
	memstore := filepath.Join("store", "memstore")
	require.True(t, slices.ContainsFunc(files, func(f string) bool { return filepath.Dir(f) == memstore }),
		"the check does not read memstore: it checks less than it says")
	var uses []timeUse
	for _, path := range files {
		fset := token.NewFileSet()
		file, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		require.NoError(t, err)
		names := map[string]bool{}
		for _, imp := range file.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == "time" {
				switch {
				case imp.Name == nil:
					names["time"] = true
				case imp.Name.Name == ".":
					uses = append(uses, timeUse{path: path, name: "dot import", pos: fset.Position(imp.Pos()).String()})
				case imp.Name.Name != "_":
					names[imp.Name.Name] = true
				}
			}
		}
		for _, decl := range file.Decls {
			fn := ""
			if d, ok := decl.(*ast.FuncDecl); ok {
				fn = d.Name.Name
			}
			ast.Inspect(decl, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				pkg, ok := sel.X.(*ast.Ident)
				if ok && names[pkg.Name] && (timeReaders[sel.Sel.Name] || timeWaiters[sel.Sel.Name]) {
					uses = append(uses, timeUse{path: path, fn: fn, name: sel.Sel.Name, pos: fset.Position(sel.Pos()).String()})
				}
				return true
			})
		}
	}
	return uses
}

func TestR12_OnlyTheClockReadsTheTime(t *testing.T) {
	var violations []string
	clockReads := 0
	for _, use := range timeUses(t) {
		switch {
		case filepath.Dir(use.path) == "." && use.fn == "Now" && use.name == "Now": // systemClock.Now
			clockReads++
		case !timeWaiters[use.name]:
			violations = append(violations, use.pos+": time."+use.name)
		}
	}
	require.Empty(t, violations, "only the default clock's Now may read the time")
	require.Positive(t, clockReads, "the check did not find the default clock's time.Now: it checks nothing")
}

// waitsAllowed lists the waits that drive no rule: functions in which
// library code may wait on a wall-clock timer, with their package's
// directory.
var waitsAllowed = map[string]string{
	// Migrate backs off while processes race to switch a new SQLite file
	// to WAL; no key state depends on it.
	"sqliteConn": filepath.Join("store", "sqlstore"),
}

func TestR12_NothingElseWaitsOnTheWallClock(t *testing.T) {
	var violations []string
	for _, use := range timeUses(t) {
		if timeWaiters[use.name] && waitsAllowed[use.fn] != filepath.Dir(use.path) {
			violations = append(violations, use.pos+": time."+use.name+" in "+use.fn)
		}
	}
	require.Empty(t, violations, "library code waits on the wall clock; expiry must follow the injected clock")
}

// libraryFiles returns the non-test Go files of the root package and of
// every package under store/.
func libraryFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	err = filepath.WalkDir("store", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") {
			files = append(files, path)
		}
		return nil
	})
	require.NoError(t, err)
	var out []string
	for _, f := range files {
		if !strings.HasSuffix(f, "_test.go") {
			out = append(out, f)
		}
	}
	return out
}

// sqlTimeFuncs are SQL expressions that read the database server's clock.
var sqlTimeFuncs = regexp.MustCompile(`(?i)\b(now\s*\(|current_timestamp|current_date|current_time|localtimestamp|localtime\b|clock_timestamp|statement_timestamp|transaction_timestamp|sysdate|getdate|unixepoch\s*\(|'now')`)

func TestR12_StoresNeverReadTheDatabaseClock(t *testing.T) {
	var violations []string
	err := filepath.WalkDir("store", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		switch {
		case strings.HasSuffix(path, ".sql"):
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for i, line := range strings.Split(string(data), "\n") {
				code, _, _ := strings.Cut(line, "--")
				if sqlTimeFuncs.MatchString(code) {
					violations = append(violations, path+":"+strconv.Itoa(i+1)+": "+strings.TrimSpace(line))
				}
			}
		case strings.HasSuffix(path, ".go"):
			fset := token.NewFileSet()
			file, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			ast.Inspect(file, func(n ast.Node) bool {
				if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING && sqlTimeFuncs.MatchString(lit.Value) {
					violations = append(violations, fset.Position(lit.Pos()).String()+": "+lit.Value)
				}
				return true
			})
		}
		return nil
	})
	require.NoError(t, err)
	require.Empty(t, violations, "SQL must take every time from the Manager")
}

func TestS1_RandomnessComesFromCryptoRand(t *testing.T) {
	usesCryptoRand := false
	for _, path := range libraryFiles(t) {
		if strings.HasPrefix(path, "store") {
			continue // secrets are drawn in the root package only
		}
		file, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		require.NoError(t, err)
		for _, imp := range file.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			require.NotContains(t, []string{"math/rand", "math/rand/v2"}, p, "%s imports %s", path, p)
			if p == "crypto/rand" {
				usesCryptoRand = true
			}
		}
	}
	require.True(t, usesCryptoRand, "no file of the package imports crypto/rand")
}

// TestS3_SecretsAreComparedInConstantTime reads the package source: the
// functions that compare a presented secret with a stored digest must use
// crypto/subtle, and no function may compare digests with == or
// bytes.Equal.
func TestS3_SecretsAreComparedInConstantTime(t *testing.T) {
	fset := token.NewFileSet()
	funcs := map[string]*ast.FuncDecl{}
	var violations []string
	for _, path := range libraryFiles(t) {
		if strings.HasPrefix(path, "store") {
			continue // stores look records up by digest; they compare no presented secret
		}
		file, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		require.NoError(t, err)
		for _, decl := range file.Decls {
			if fn, ok := decl.(*ast.FuncDecl); ok {
				funcs[fn.Name.Name] = fn
			}
		}
		ast.Inspect(file, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BinaryExpr:
				if (n.Op == token.EQL || n.Op == token.NEQ) && (digestExpr(n.X) || digestExpr(n.Y)) {
					violations = append(violations, fset.Position(n.Pos()).String()+": digest compared with "+n.Op.String())
				}
			case *ast.CallExpr:
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok {
					if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "bytes" && (sel.Sel.Name == "Equal" || sel.Sel.Name == "Compare") {
						violations = append(violations, fset.Position(n.Pos()).String()+": bytes."+sel.Sel.Name)
					}
				}
			}
			return true
		})
	}
	require.Empty(t, violations)
	verify := funcs["Verify"]
	require.NotNil(t, verify, "no Verify function found")
	compares := callsConstantTimeCompare(verify)
	ast.Inspect(verify, func(n ast.Node) bool {
		if call, ok := n.(*ast.CallExpr); ok {
			if id, ok := call.Fun.(*ast.Ident); ok && funcs[id.Name] != nil {
				compares = compares || callsConstantTimeCompare(funcs[id.Name])
			}
		}
		return true
	})
	require.True(t, compares, "neither Verify nor a function it calls uses subtle.ConstantTimeCompare")
}

// digestExpr reports whether e names a digest: a .Digest field or a
// variable whose name says it holds one.
func digestExpr(e ast.Expr) bool {
	for {
		switch x := e.(type) {
		case *ast.SliceExpr:
			e = x.X
		case *ast.ParenExpr:
			e = x.X
		case *ast.SelectorExpr:
			return strings.Contains(strings.ToLower(x.Sel.Name), "digest")
		case *ast.Ident:
			return strings.Contains(strings.ToLower(x.Name), "digest")
		default:
			return false
		}
	}
}

func callsConstantTimeCompare(fn *ast.FuncDecl) bool {
	found := false
	ast.Inspect(fn, func(n ast.Node) bool {
		if call, ok := n.(*ast.CallExpr); ok {
			if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "ConstantTimeCompare" {
				if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "subtle" {
					found = true
				}
			}
		}
		return true
	})
	return found
}

// TestS3_UnknownKeyIsComparedLikeAWrongToken reads Verify's source: a key
// the store does not know must not return before the token comparisons,
// or the time Verify takes tells whether a key ID exists (issue 7, item
// 7). The benchmarks Verify/wrong and Verify/unknown_key measure it.
func TestS3_UnknownKeyIsComparedLikeAWrongToken(t *testing.T) {
	fset, verify := libraryFunc(t, "Manager", "Verify")
	ast.Inspect(verify, func(n ast.Node) bool {
		stmt, ok := n.(*ast.IfStmt)
		if !ok {
			return true
		}
		mentionsMiss := false
		ast.Inspect(stmt.Cond, func(n ast.Node) bool {
			if id, ok := n.(*ast.Ident); ok && id.Name == "ErrKeyNotFound" {
				mentionsMiss = true
			}
			return true
		})
		if !mentionsMiss {
			return true
		}
		returns := false
		ast.Inspect(stmt.Body, func(n ast.Node) bool {
			_, isReturn := n.(*ast.ReturnStmt)
			returns = returns || isReturn
			return true
		})
		require.False(t, returns && !strings.Contains(exprString(stmt.Cond), "!errors.Is"),
			"%s: Verify returns early for an unknown key", fset.Position(stmt.Pos()))
		return true
	})
}

func exprString(e ast.Expr) string {
	var b strings.Builder
	ast.Inspect(e, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.UnaryExpr:
			b.WriteString(n.Op.String())
		case *ast.SelectorExpr:
			if x, ok := n.X.(*ast.Ident); ok {
				b.WriteString(x.Name + "." + n.Sel.Name)
			}
		}
		return true
	})
	return b.String()
}

// libraryFunc finds the function (recv "") or method named name in the
// root package's non-test files, whichever file holds it.
func libraryFunc(t *testing.T, recv, name string) (*token.FileSet, *ast.FuncDecl) {
	t.Helper()
	fset := token.NewFileSet()
	for _, path := range libraryFiles(t) {
		if filepath.Dir(path) != "." {
			continue
		}
		file, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		require.NoError(t, err)
		for _, decl := range file.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if ok && fn.Name.Name == name && receiverName(fn) == recv {
				return fset, fn
			}
		}
	}
	t.Fatalf("no function %s.%s in the library", recv, name)
	return nil, nil
}

func receiverName(fn *ast.FuncDecl) string {
	if fn.Recv == nil || len(fn.Recv.List) == 0 {
		return ""
	}
	typ := fn.Recv.List[0].Type
	if star, ok := typ.(*ast.StarExpr); ok {
		typ = star.X
	}
	if id, ok := typ.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}
