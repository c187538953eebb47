package memstore_test

import (
	"testing"

	"github.com/keyrenew/tokens"
	"github.com/keyrenew/tokens/store/memstore"
	"github.com/keyrenew/tokens/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) tokens.Store { return memstore.New() })
}
