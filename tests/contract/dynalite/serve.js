// dynalite for tests/contract: in memory, on 127.0.0.1 and a free port, which it prints as its first line.
// It exits when its standard input closes, so it never outlives the test session that started it.
const dynalite = require('dynalite')

const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 })
server.listen(0, '127.0.0.1', () => console.log(server.address().port))
process.stdin.on('end', () => process.exit(0))
process.stdin.resume()
